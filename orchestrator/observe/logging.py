"""Structured logs: JSON lines when stderr is not a terminal, readable text when it is.

Every record may carry `pipeline`, `step`, `run_id` and `msg_id` (pass them with
`step_logger(...)` or `extra=`); formatters put them on every line and hide DSN passwords.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from orchestrator.db.dsn import redact

CONTEXT_KEYS = ("pipeline", "step", "run_id", "msg_id", "attempt", "worker")


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {k: getattr(record, k) for k in CONTEXT_KEYS if getattr(record, k, None) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, context keys, exc."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
            **{k: str(v) for k, v in _context(record).items()},
        }
        if record.exc_info:
            data["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(data).decode()


class TextFormatter(logging.Formatter):
    """`12:00:01 INFO  [w2] work_orders/barcode run=… msg` for people at a terminal (``[w2]``:
    the worker index under a supervisor)."""

    def format(self, record: logging.LogRecord) -> str:
        ctx = _context(record)
        where = "/".join(str(ctx[k]) for k in ("pipeline", "step") if k in ctx)
        if "worker" in ctx:
            where = f"[w{ctx['worker']}] {where}".rstrip()
        tags = " ".join(f"{k}={ctx[k]}" for k in ("run_id", "msg_id", "attempt") if k in ctx)
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = " ".join(p for p in (stamp, f"{record.levelname:<7}", where, tags) if p)
        line = f"{line} {redact(record.getMessage())}"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


def configure(
    level: str | int = "INFO", *, json_output: bool | None = None, stream: IO[str] | None = None
) -> None:
    """Install one handler on the root logger (idempotent)."""
    stream = stream or sys.stderr
    if json_output is None:
        json_output = not stream.isatty()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_output else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_orchestrator", False)]:
        root.removeHandler(old)
    handler._orchestrator = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def step_logger(name: str, **context: Any) -> logging.LoggerAdapter[logging.Logger]:
    """A logger whose records carry the given context (pipeline, step, run_id, msg_id...)."""
    return logging.LoggerAdapter(logging.getLogger(name), context)
