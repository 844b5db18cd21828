"""`orchestrator run` (workers for the pipelines' steps) and `orchestrator send` (start runs).

run loads and validates the pipeline files, imports the handlers of the selected steps, checks
that the database holds the applied version of those pipelines, then runs one worker process
or a supervisor of ``--workers N`` processes (`orchestrator.runtime.supervisor`).

send starts runs from the shell: one JSON object as an argument or on stdin, or JSON lines
from a file; it prints the run ids, one per line. Every payload is checked before anything is
enqueued, and a file's runs are enqueued in one transaction: all or nothing. With ``--wait``
it then follows the runs until they end and exits 0 when all are done, 1 when any failed
(dead letter) or is still running after ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from orchestrator.cli import add_dsn_option, add_pipelines_option, require_path
from orchestrator.cli.arguments import duration, port, positive_int
from orchestrator.errors import ConfigError, NotFound, OrchestratorError, UsageError

if TYPE_CHECKING:
    from orchestrator.runtime.worker import StepPlan
    from orchestrator.spec import Pipeline

LOG_LEVELS = ("debug", "info", "warning", "error")
SEND_CHUNK = 1000
"""Payloads per `start_many` call when sending a file (all in one transaction)."""
PROGRESS_THRESHOLD = 1000
"""Files with at least this many payloads show a progress bar (on a terminal)."""
MAX_REPORTED_LINES = 20


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `run` and `send` commands."""
    _register_run(sub)
    _register_send(sub)


# -- run ---------------------------------------------------------------------------------------


def _register_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run",
        help="run workers for the pipelines' steps",
        description=(
            "Consume the step queues of the pipelines and run their handlers. SIGTERM or "
            "SIGINT stops reading and lets running handlers finish (up to --shutdown-timeout); "
            "a second signal exits at once. Messages are never lost either way."
        ),
    )
    add_dsn_option(run)
    run.add_argument(
        "--listen-dsn",
        metavar="URL",
        default=os.environ.get("ORCHESTRATOR_LISTEN_DSN") or None,
        help="PostgreSQL URL for LISTEN wake-ups when --dsn goes through a transaction pooler "
        "(default: $ORCHESTRATOR_LISTEN_DSN; without one, such workers poll)",
    )
    add_pipelines_option(run)
    run.add_argument(
        "--pipeline",
        action="append",
        default=[],
        metavar="NAME",
        dest="pipeline_names",
        help="run only this pipeline (repeatable; default: all)",
    )
    run.add_argument(
        "--step",
        action="append",
        default=[],
        metavar="NAME",
        dest="step_names",
        help="run only this step, as STEP or PIPELINE.STEP (repeatable; default: all)",
    )
    run.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="batches handled at once per step (default: each step's concurrency)",
    )
    run.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="worker processes (default: 1; handlers are Python, one process uses one core)",
    )
    run.add_argument(
        "--drain",
        action="store_true",
        help="exit 0 once the selected queues hold no message (visible, in flight or delayed)",
    )
    run.add_argument(
        "--shutdown-timeout",
        type=duration,
        default=30.0,
        metavar="S",
        help="how long running handlers may take to finish after SIGTERM (default: 30s)",
    )
    run.add_argument(
        "--metrics-port", type=port, metavar="P", help="serve Prometheus metrics on this port"
    )
    run.add_argument(
        "--log-format",
        choices=["json", "text"],
        help="log format (default: text on a terminal, JSON lines otherwise)",
    )
    run.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="log level (default: info)"
    )
    # `run signup` is a mistake worth explaining, not argparse's "unrecognized arguments".
    run.add_argument("stray", nargs="*", help=argparse.SUPPRESS)
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from orchestrator.db import resolve_dsn
    from orchestrator.observe.logging import configure
    from orchestrator.runtime.supervisor import WORKER_ENV

    if args.stray:
        flags = " ".join(f"--pipeline {name}" for name in args.stray)
        raise UsageError(f"run takes no positional arguments; to run only some pipelines: {flags}")
    worker_index = os.environ.get(WORKER_ENV)
    log_format = args.log_format or ("text" if sys.stderr.isatty() else "json")
    if args.verbose > 1:  # -vv: debug, as for every command (and for the worker processes)
        args.log_level = "debug"
    configure(args.log_level.upper(), json_output=log_format == "json")
    if worker_index is not None:
        _tag_log_records("worker", worker_index)

    loaded, selected = _load(args)
    dsn = resolve_dsn(args.dsn)
    # The database decides what may run: no handler is imported before the check passes.
    running: dict[str, set[str]] = {}
    for pipeline, step in selected:
        running.setdefault(pipeline.name, set()).add(step)
    step_queues = [pipeline.step(name).queue for pipeline, name in selected]
    asyncio.run(
        _preflight(
            dsn, [p for p in loaded if p.name in running], step_queues, args.listen_dsn, running
        )
    )
    plans = _import_handlers(selected)

    show = args.drain and worker_index is None and sys.stderr.isatty()
    queues = {f"{p.name}.{s}": p.queue_name(s) for p, s in selected} if show else {}
    terminal = [p.queue_name(s) for p, s in selected if not p.successors(s)]
    if args.workers > 1 and worker_index is None:
        return _supervise(args, dsn, log_format, loaded, queues, terminal)
    return _work(
        args, dsn, plans, supervised=worker_index is not None, queues=queues, ends=terminal
    )


def _load(args: argparse.Namespace) -> tuple[list[Pipeline], list[tuple[Pipeline, str]]]:
    """Valid pipelines, and the selected (pipeline, step) pairs."""
    from orchestrator.spec import load_pipelines

    folder = require_path(args.pipelines)
    result = load_pipelines(folder)
    result.raise_for_errors()
    if not result.pipelines:
        raise ConfigError(f"no pipeline files in {folder}")
    return result.pipelines, select_steps(result.pipelines, args.pipeline_names, args.step_names)


def select_steps(
    pipelines: Sequence[Pipeline], pipeline_names: Sequence[str], step_names: Sequence[str]
) -> list[tuple[Pipeline, str]]:
    """The (pipeline, step) pairs chosen by --pipeline and --step; unknown names are a
    UsageError listing the known ones."""
    by_name = {p.name: p for p in pipelines}
    unknown = [n for n in pipeline_names if n not in by_name]
    if unknown:
        raise UsageError(
            f"unknown pipeline {_names(unknown)}; known pipelines: {_names(sorted(by_name))}"
        )
    chosen = [by_name[n] for n in dict.fromkeys(pipeline_names)] or list(pipelines)
    pairs = [(p, step) for p in chosen for step in p.order]
    if not step_names:
        return pairs
    picked = [(p, s) for p, s in pairs if s in step_names or f"{p.name}.{s}" in step_names]
    matched = {s for _, s in picked} | {f"{p.name}.{s}" for p, s in picked}
    unknown = [n for n in step_names if n not in matched]
    if unknown:
        known = sorted(f"{p.name}.{s}" for p, s in pairs)
        raise UsageError(f"unknown step {_names(unknown)}; known steps: {_names(known)}")
    return picked


def _names(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _import_handlers(selected: list[tuple[Pipeline, str]]) -> list[StepPlan]:
    from orchestrator.runtime.worker import StepPlan
    from orchestrator.spec import HandlerError, inspect_handler

    plans: list[StepPlan] = []
    for pipeline, name in selected:
        step = pipeline.step(name)
        try:
            handler = inspect_handler(step.handler)
        except HandlerError as exc:
            raise ConfigError(f"step {pipeline.name}.{name}: {exc}") from None
        plans.append(StepPlan(pipeline, step, handler))
    return plans


async def _preflight(
    dsn: str,
    pipelines: list[Pipeline],
    queues: list[str],
    listen: str | None,
    steps: dict[str, set[str]] | None = None,
) -> None:
    from orchestrator.compiler.applied import check_applied, check_queues
    from orchestrator.db import connect
    from orchestrator.runtime.wakeup import listen_dsn
    from orchestrator.runtime.worker import CONNECT_PATIENCE

    # A full server (a fleet starting at once) is waited out, as the worker's pool does.
    conn = await connect(dsn, patience=CONNECT_PATIENCE)
    try:
        await check_applied(conn, pipelines, steps)
        await check_queues(conn, queues)
    finally:
        await conn.close()
    await listen_dsn(dsn, listen)


def _work(
    args: argparse.Namespace,
    dsn: str,
    plans: list[StepPlan],
    *,
    supervised: bool,
    queues: dict[str, str],
    ends: list[str],
) -> int:
    from orchestrator.cli.drain import with_drain_progress
    from orchestrator.observe.metrics import MULTIPROC_ENV
    from orchestrator.runtime.worker import WorkerConfig, run_worker

    config = WorkerConfig(
        dsn=dsn,
        steps=tuple(plans),
        concurrency=args.concurrency,
        drain=args.drain,
        shutdown_timeout=args.shutdown_timeout,
        metrics_port=None if supervised else args.metrics_port,
        supervised=supervised,
        count_metrics=bool(os.environ.get(MULTIPROC_ENV)) and supervised,
        listen_dsn=args.listen_dsn,
    )
    return asyncio.run(with_drain_progress(run_worker(config), dsn, queues, ends))


def _supervise(
    args: argparse.Namespace,
    dsn: str,
    log_format: str,
    pipelines: list[Pipeline],
    queues: dict[str, str],
    ends: list[str],
) -> int:
    from orchestrator.cli.drain import with_drain_progress
    from orchestrator.runtime.supervisor import run_supervisor

    command = [
        sys.executable,
        "-m",
        "orchestrator",
        "run",
        "--pipelines",
        str(args.pipelines),
        *(f"--pipeline={n}" for n in args.pipeline_names),
        *(f"--step={n}" for n in args.step_names),
        *([f"--concurrency={args.concurrency}"] if args.concurrency else []),
        *(["--drain"] if args.drain else []),
        f"--shutdown-timeout={args.shutdown_timeout}",
        f"--log-format={log_format}",
        f"--log-level={args.log_level}",
        "--workers=1",
    ]
    # The DSN goes through the environment: a command line is visible to every local user.
    # ORCHESTRATOR_DSN outranks DATABASE_URL: set it, so an inherited one cannot win over --dsn.
    env = {**os.environ, "ORCHESTRATOR_DSN": dsn}
    if args.listen_dsn:
        env["ORCHESTRATOR_LISTEN_DSN"] = args.listen_dsn
    supervisor = run_supervisor(
        command,
        args.workers,
        env=env,
        drain=args.drain,
        metrics_port=args.metrics_port,
        dsn=dsn,
        pipelines=pipelines,
    )
    return asyncio.run(with_drain_progress(supervisor, dsn, queues, ends))


def _tag_log_records(key: str, value: str) -> None:
    """Put `key` on every log record of this process (e.g. the worker index)."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_orchestrator", False):
            handler.addFilter(_TagFilter(key, value))


class _TagFilter(logging.Filter):
    def __init__(self, key: str, value: str) -> None:
        super().__init__()
        self._key = key
        self._value = value

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, self._key, None) is None:
            setattr(record, self._key, self._value)
        return True


# -- send --------------------------------------------------------------------------------------


def _register_send(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = sub.add_parser(
        "send",
        help="start runs of a pipeline",
        description=(
            "Start runs of PIPELINE and print their run ids, one per line. The payload is a "
            "JSON object: as an argument, '-' to read it from stdin, or --file with one object "
            "per line (JSON lines; '-' reads them from stdin). Every payload is checked before "
            "anything is sent, and a file's runs are sent in one transaction."
        ),
    )
    add_dsn_option(send)
    send.add_argument("pipeline", metavar="PIPELINE", help="name of an applied pipeline")
    send.add_argument(
        "payload", nargs="?", metavar="JSON", help="the payload (a JSON object), or - for stdin"
    )
    send.add_argument(
        "--file", metavar="PATH", help="JSON lines file: one payload per line (- for stdin)"
    )
    send.add_argument(
        "--delay",
        type=duration,
        metavar="D",
        help="start the runs after this long (seconds, or e.g. 30s, 5m)",
    )
    send.add_argument("--json", action="store_true", help="print the run ids as a JSON list")
    send.add_argument(
        "--wait",
        action="store_true",
        help="wait for the runs to end: exit 0 when all are done, 1 when any failed",
    )
    send.add_argument(
        "--timeout",
        type=duration,
        metavar="S",
        help="with --wait: give up after this long (exit 1; default: wait until they end)",
    )
    send.set_defaults(func=_send)


def _send(args: argparse.Namespace) -> int:
    from orchestrator.db import resolve_dsn

    _check_send_arguments(args)
    if args.file is not None:
        payloads = parse_json_lines(_read_input(args.file), _source_name(args.file))
    else:
        text = _read_input("-") if args.payload == "-" else args.payload.encode()
        payloads = [_parse_one(text, "stdin" if args.payload == "-" else "payload")]
    if not payloads:
        print(
            f"orchestrator: no payloads in {_source_name(args.file)}; nothing sent", file=sys.stderr
        )
        return 0
    dsn = resolve_dsn(args.dsn)
    run_ids = asyncio.run(_enqueue(dsn, args.pipeline, payloads, args.delay))
    if args.json and not args.wait:
        print(orjson.dumps([str(r) for r in run_ids]).decode())
    elif not args.json:
        sys.stdout.write("".join(f"{r}\n" for r in run_ids))
        sys.stdout.flush()
    if not args.wait:
        return 0
    from orchestrator.cli.wait import wait_for_runs

    return wait_for_runs(dsn, args.pipeline, [str(r) for r in run_ids], args.timeout, args.json)


def _check_send_arguments(args: argparse.Namespace) -> None:
    """The usage mistakes of send, said in its own words."""
    if args.pipeline.lstrip().startswith(("{", "[")) and not str(args.payload).startswith("{"):
        raise UsageError(
            "the pipeline comes first, then the payload: "
            f"orchestrator send {args.payload or 'PIPELINE'} '{{...}}'"
        )
    if (args.payload is None) == (args.file is None):
        raise UsageError("give one payload (JSON or -) or --file PATH")
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout goes with --wait")


def _source_name(path: str | None) -> str:
    return "stdin" if path in (None, "-") else str(path)


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


class PayloadParseError(ConfigError):
    """A payload that cannot be sent; `line` and `column` locate it (1-based)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.line = line
        self.column = column


def parse_payload(text: bytes) -> dict[str, Any]:
    """A payload from JSON text: a JSON object the runtime can send, else PayloadParseError."""
    from orchestrator.runtime.handoff import PayloadError, encode_object

    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise PayloadParseError(f"not valid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    if not isinstance(value, dict):
        raise PayloadParseError(f"the payload must be a JSON object, not {_json_type(value)}")
    try:
        encode_object(value, "the payload")  # size limit, NUL characters
    except PayloadError as exc:
        raise PayloadParseError(str(exc)) from None
    return value


def _parse_one(text: bytes, where: str) -> dict[str, Any]:
    try:
        return parse_payload(text)
    except PayloadParseError as exc:
        if exc.line is None:
            raise
        raise ConfigError(f"{where} at line {exc.line}, column {exc.column}: {exc}") from None


def parse_json_lines(data: bytes, name: str) -> list[dict[str, Any]]:
    """Every payload of a JSON lines file; raises ConfigError after reporting each bad line."""
    payloads: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            payloads.append(parse_payload(line))
        except PayloadParseError as exc:
            problems.append(f"{name}:{number}:{exc.column or 1}: error: {exc}")
    if problems:
        for problem in problems[:MAX_REPORTED_LINES]:
            print(problem, file=sys.stderr)
        if len(problems) > MAX_REPORTED_LINES:
            print(f"... and {len(problems) - MAX_REPORTED_LINES} more", file=sys.stderr)
        noun = "line" if len(problems) == 1 else "lines"
        raise ConfigError(f"{len(problems)} invalid {noun} in {name}; nothing was sent")
    return payloads


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


async def _enqueue(
    dsn: str, pipeline: str, payloads: list[dict[str, Any]], delay: float | None
) -> list[Any]:
    from orchestrator.db import connect

    conn = await connect(dsn)
    try:
        return await _start_runs(conn, pipeline, payloads, delay)
    except NotFound as exc:
        raise NotFound(f"{exc}{await _applied_names(conn)}") from None
    finally:
        await conn.close()


async def _applied_names(conn: Any) -> str:
    """'; applied pipelines: a, b' (or that there are none), for a pipeline not found."""
    from orchestrator.state import applied_pipelines

    try:
        names = [p.name for p in await applied_pipelines(conn)]
    except OrchestratorError:
        return ""
    return f"; applied pipelines: {', '.join(names)}" if names else "; no pipeline is applied"


async def _start_runs(
    conn: Any, pipeline: str, payloads: list[dict[str, Any]], delay: float | None
) -> list[Any]:
    from orchestrator.runtime.api import start, start_many

    if len(payloads) == 1:
        return [await start(pipeline, payloads[0], conn=conn, delay=delay)]
    progress = _Progress(len(payloads)) if len(payloads) >= PROGRESS_THRESHOLD else None
    try:
        run_ids: list[Any] = []
        async with conn.transaction():
            for first in range(0, len(payloads), SEND_CHUNK):
                chunk = payloads[first : first + SEND_CHUNK]
                run_ids.extend(await start_many(pipeline, chunk, conn=conn, delay=delay))
                if progress is not None:
                    progress.show(len(run_ids))
        return run_ids
    finally:
        if progress is not None:
            progress.close()


class _Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    WIDTH = 30

    def __init__(self, total: int) -> None:
        self._total = total
        self._on = sys.stderr.isatty()

    def show(self, done: int) -> None:
        if not self._on:
            return
        filled = self.WIDTH * done // self._total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        sys.stderr.write(f"\rsending [{bar}] {done:,}/{self._total:,}")
        sys.stderr.flush()

    def close(self) -> None:
        if self._on:
            sys.stderr.write("\r" + " " * (self.WIDTH + 40) + "\r")
            sys.stderr.flush()
