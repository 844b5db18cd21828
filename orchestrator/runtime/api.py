"""Starting runs from code: `start` and `start_many`.

::

    run_id = await orchestrator.start("work_orders", {"file": "a.csv"}, conn=app_conn)

With `conn`, the run is enqueued inside whatever transaction that connection has open: it
starts when the caller commits, and never if the caller rolls back. Without it, `dsn` (else
``DATABASE_URL``, else the embedded server) is used for one short connection.

Payloads are JSON objects of at most `MAX_PAYLOAD_BYTES` (1 MiB) once serialised, without NUL
characters (jsonb cannot store them). `headers` adds keys of yours to every message of the run
(e.g. a tenant or correlation id); the runtime's own keys (`run_id`, `step`, ...) are refused.
`delay` (seconds or a timedelta) overrides the entry step's delay.

`key` deduplicates: while the run started with the same pipeline and key is not finished
(or finished less than the pipeline's ``dedupe_window`` ago), a start returns that run's id
and sends nothing, also when two starts race in two transactions.

The work happens in SQL, ``orchestrator.start_runs(pipeline, payloads, headers, delay)``
(``orchestrator.start_keyed_runs(..., keys)`` with keys), so other code (a scheduler, a
trigger) can start runs from SQL as well.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from orchestrator.db.named_sql import named_queries
from orchestrator.errors import NotFound, QueueError, SchemaMissing
from orchestrator.observe import otel
from orchestrator.runtime.contracts import check_entry
from orchestrator.runtime.handoff import (
    CONTRACT_HEADERS,
    MAX_PAYLOAD_BYTES,
    PayloadError,
    decode,
    encode_object,
)
from orchestrator.spec.naming import is_valid_name

__all__ = ["MAX_PAYLOAD_BYTES", "Started", "start", "start_keyed", "start_many"]

MAX_KEY_LENGTH = 500
"""Longest deduplication key accepted, in characters."""


@dataclass(frozen=True)
class Started:
    """A run a keyed start asked for: its id, and whether it existed already."""

    run_id: uuid.UUID
    duplicate: bool


async def start(
    pipeline: str,
    payload: Mapping[str, Any],
    *,
    conn: Any | None = None,
    dsn: str | None = None,
    headers: Mapping[str, Any] | None = None,
    delay: float | timedelta | None = None,
    key: str | None = None,
) -> uuid.UUID:
    """Start one run of `pipeline` with `payload`; returns its run id (with `key`, maybe the
    id of the run that holds the key)."""
    if key is not None:
        [started] = await start_keyed(
            pipeline, [payload], [key], conn=conn, dsn=dsn, headers=headers, delay=delay
        )
        return started.run_id
    run_ids = await start_many(
        pipeline, [payload], conn=conn, dsn=dsn, headers=headers, delay=delay
    )
    return run_ids[0]


async def start_keyed(
    pipeline: str,
    payloads: Sequence[Mapping[str, Any]],
    keys: Sequence[str | None],
    *,
    conn: Any | None = None,
    dsn: str | None = None,
    headers: Mapping[str, Any] | None = None,
    delay: float | timedelta | None = None,
) -> list[Started]:
    """Start one run per payload with a deduplication key each (None: no key); says for each
    whether it was a duplicate of a run that holds the key."""
    if isinstance(keys, str) or len(keys) != len(payloads):
        raise QueueError("start_keyed takes one key (or None) per payload")
    checked = [_key(k) for k in keys]
    request = _request(pipeline, payloads, headers, delay)
    if request is None:
        return []
    rows = await _on_connection(conn, dsn, "start_keyed_runs", *request, checked)
    return [Started(uuid.UUID(str(row[0])), bool(row[1])) for row in rows]


async def start_many(
    pipeline: str,
    payloads: Sequence[Mapping[str, Any]],
    *,
    conn: Any | None = None,
    dsn: str | None = None,
    headers: Mapping[str, Any] | None = None,
    delay: float | timedelta | None = None,
) -> list[uuid.UUID]:
    """Start one run per payload, in one statement; returns the run ids in payload order."""
    request = _request(pipeline, payloads, headers, delay)
    if request is None:
        return []
    rows = await _on_connection(conn, dsn, "start_runs", *request)
    return [uuid.UUID(str(row[0])) for row in rows]


_Request = tuple[str, list[str], list[str] | None, float | None]


def _request(
    pipeline: object,
    payloads: Sequence[Mapping[str, Any]],
    headers: Mapping[str, Any] | None,
    delay: float | timedelta | None,
) -> _Request | None:
    """The checked arguments of a start (None: nothing to start)."""
    if not isinstance(pipeline, str) or not pipeline:
        raise QueueError(f"pipeline must be a pipeline name, not {pipeline!r}")
    if not is_valid_name(pipeline):  # refused before any SQL: names are data, never code
        raise NotFound(f"pipeline {pipeline!r} is not applied; run orchestrator apply")
    if isinstance(payloads, Mapping | str | bytes):
        raise QueueError("start_many takes a list of payloads; use start() for one")
    texts = [_payload_text(p, i, len(payloads)) for i, p in enumerate(payloads)]
    if not texts:
        return None
    header_text = _headers_text(otel.caller_headers(headers))
    header_texts = None if header_text is None else [header_text] * len(texts)
    return pipeline, texts, header_texts, _delay_seconds(delay)


async def _on_connection(conn: Any | None, dsn: str | None, query: str, *args: Any) -> list[Any]:
    if conn is not None:
        return await _start(conn, query, *args)
    from orchestrator.db import connect, resolve_dsn

    own = await connect(resolve_dsn(dsn))
    try:
        return await _start(own, query, *args)
    finally:
        await own.close()


async def _start(conn: Any, query: str, pipeline: str, *args: Any) -> list[Any]:
    try:
        rows = await _checked_start(conn, query, pipeline, *args)
    except asyncpg.UndefinedObjectError as exc:
        raise NotFound(str(exc.args[0] if exc.args else exc)) from None
    except asyncpg.UndefinedTableError as exc:
        raise NotFound(
            f"pipeline '{pipeline}': {exc.args[0] if exc.args else exc}; run orchestrator apply"
        ) from None
    except (asyncpg.UndefinedFunctionError, asyncpg.InvalidSchemaNameError):
        raise SchemaMissing(
            "the database has no orchestrator schema (or an older one); run orchestrator apply"
        ) from None
    except asyncpg.InvalidParameterValueError as exc:
        raise QueueError(str(exc.args[0] if exc.args else exc)) from None
    return rows


def _key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or "\x00" in key:
        raise QueueError(
            f"a run key must be a non-empty string of at most {MAX_KEY_LENGTH} characters "
            "without NUL characters"
        )
    return key


async def _checked_start(conn: Any, query: str, pipeline: str, *args: Any) -> list[Any]:
    """Run start query `query` once the payloads (`args[0]`) meet the entry step's applied
    input contract. A plain start whose entry step declares none costs one statement
    (`start_runs_unless_contract`); with a contract, the payloads are checked here first."""
    queries = named_queries("orchestrator.runtime")
    if query == "start_runs":
        row = await conn.fetchrow(queries["start_runs_unless_contract"], pipeline, *args)
        if row is not None and row[0] is None:
            return [(run_id,) for run_id in row[2]]  # no contract: started
    else:
        row = await conn.fetchrow(queries["entry_contract"], pipeline)
    _check_contract(pipeline, row, args[0])
    rows: list[Any] = await conn.fetch(queries[query], pipeline, *args)
    return rows


def _check_contract(pipeline: str, row: Any, payloads: list[str]) -> None:
    """Refuse the payloads when one breaks the entry contract in `row` (contract, step)."""
    if row is None or row[0] is None:
        return  # not applied (start_runs says so) or no contract declared
    where = f"step '{row[1]}' of pipeline '{pipeline}'"
    check_entry(decode(row[0]), [decode(p) for p in payloads], where)


def _payload_text(payload: object, index: int, count: int) -> str:
    what = "payload" if count == 1 else f"payload {index + 1} of {count}"
    try:
        return encode_object(payload, what)
    except PayloadError as exc:
        raise QueueError(str(exc)) from None


def _headers_text(headers: Mapping[str, Any] | None) -> str | None:
    if headers is None:
        return None
    if not isinstance(headers, Mapping):
        raise QueueError(f"headers must be a dict, not {type(headers).__name__}")
    reserved = sorted(k for k in headers if k in CONTRACT_HEADERS)
    if reserved:
        raise QueueError(
            f"headers may not set {', '.join(reserved)}: the runtime sets "
            f"{', '.join(sorted(CONTRACT_HEADERS))}"
        )
    try:
        return encode_object(headers, "headers")
    except PayloadError as exc:
        raise QueueError(str(exc)) from None


def _delay_seconds(delay: float | timedelta | None) -> float | None:
    if delay is None:
        return None
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise QueueError(f"delay must be seconds or a timedelta, not {delay!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise QueueError(f"delay must be a number of seconds >= 0, got {delay!r}")
    return seconds
