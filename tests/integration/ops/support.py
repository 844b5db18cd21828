"""Pipelines and messages for the operations' tests, written the way the runtime writes them.

The data follows docs/architecture.md ("Messages"): step messages with the documented headers
(archived when handed off), dead letters with the documented body. Pipelines are provisioned
like `apply` does it: queues (plain or partitioned), the run-id indexes of archives and the
dead-letter queue, and a row of orchestrator.pipelines with the canonical spec.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from orchestrator.spec import Pipeline, parse_pipeline

ORDERS = """
pipeline: orders
description: fetch an order, label it and sync it, then report
defaults:
  visibility_timeout: 30s
  timeout: 10s
  retry: {max_attempts: 3}
queues:
  archive: {retention: 1 day}
schedule:
  - {cron: "*/5 * * * *", payload: {kind: five}, name: every_five}
  - {cron: "0 6 * * *", payload: {kind: daily}, catch_up: 2h, timezone: Europe/Berlin, name: daily}
steps:
  fetch:
    handler: shop.steps:fetch
    next: [label, sync]
  label:
    handler: shop.steps:label
  sync:
    handler: shop.steps:sync
    visibility_timeout: 2m
    timeout: 1m
  report:
    handler: shop.steps:report
    after: [label, sync]
"""

LEDGER = """
pipeline: ledger
queues:
  archive: false
dead_letter: ledger_dead
steps:
  book:
    handler: books.steps:book
"""

PARTITIONED = """
pipeline: stream
queues:
  partitioned: {interval: 1 day, retention: 7 days}
  archive: {retention: 1 hour}
steps:
  ingest:
    handler: stream.steps:ingest
"""


def pipeline(text: str = ORDERS) -> Pipeline:
    return parse_pipeline(text)


async def provision(conn: asyncpg.Connection, model: Pipeline) -> Pipeline:
    """Create the pipeline's queues and record it as applied."""
    partitioned = model.queues.partitioned
    for queue in model.queue_names():
        if partitioned is None:
            await conn.execute("SELECT pgmq.create($1)", queue)
        else:
            interval = f"{int(partitioned.interval)} seconds"
            await conn.execute(
                "SELECT pgmq.create_partitioned($1, $2, $3)", queue, interval, "30 days"
            )
        await _run_id_index(conn, f"a_{queue}")
    await _run_id_index(conn, f"q_{model.dead_letter_queue}")
    await conn.execute(
        "INSERT INTO orchestrator.pipelines (name, spec, spec_hash, entry_step)"
        " VALUES ($1, $2, $3, $4)",
        model.name,
        model.to_json(),
        model.spec_hash(),
        model.entry_step,
    )
    return model


async def _run_id_index(conn: asyncpg.Connection, table: str) -> None:
    """The index `apply` gives archives and dead-letter queues, named as it names it."""
    await conn.execute(f"CREATE INDEX {table}_run_id ON pgmq.{table} ((headers->>'run_id'))")


def new_run() -> str:
    return str(uuid.uuid4())


def headers(
    run_id: str,
    model: Pipeline,
    step: str,
    *,
    parent_id: int | None = None,
    parent_step: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "run_id": run_id,
        "pipeline": model.name,
        "step": step,
        "parent_id": parent_id,
        "parent_step": parent_step,
        "traceparent": f"00-{uuid.UUID(run_id).hex}-{uuid.uuid4().hex[:16]}-01",
        "sent_at": datetime.now(UTC).isoformat(),
    }
    if errors is not None:
        found["errors"] = errors
    return found


def error(attempt: int, at: datetime | None = None, message: str = "boom") -> dict[str, Any]:
    moment = at or datetime.now(UTC)
    return {
        "attempt": attempt,
        "type": "RuntimeError",
        "message": message,
        "at": moment.isoformat(),
    }


async def send(
    conn: asyncpg.Connection,
    model: Pipeline,
    step: str,
    run_id: str,
    payload: dict[str, Any] | None = None,
    *,
    delay: int = 0,
    **header_options: Any,
) -> int:
    msg_id: int = await conn.fetchval(
        "SELECT * FROM pgmq.send($1, $2::jsonb, $3::jsonb, $4::integer)",
        model.queue_name(step),
        payload if payload is not None else {"run": run_id},
        headers(run_id, model, step, **header_options),
        delay,
    )
    return msg_id


async def read(
    conn: asyncpg.Connection,
    queue: str,
    vt: int = 30,
    qty: int = 1,
    only: dict[str, Any] | None = None,
) -> list[int]:
    """Read like a worker does; `only` reads only messages whose body contains it."""
    rows = await conn.fetch(
        "SELECT msg_id FROM pgmq.read($1, $2, $3, $4::jsonb)", queue, vt, qty, only or {}
    )
    return [r["msg_id"] for r in rows]


async def archive(conn: asyncpg.Connection, queue: str, msg_id: int) -> None:
    assert await conn.fetchval("SELECT pgmq.archive($1, $2::bigint)", queue, msg_id)


async def fail(
    conn: asyncpg.Connection, queue: str, msg_id: int, attempt: int, backoff: int = 60
) -> None:
    """Record a failed attempt the way a retry does: an error in the headers, vt moved."""
    await conn.execute(
        f"UPDATE pgmq.q_{queue} SET vt = clock_timestamp() + make_interval(secs => $2),"
        " headers = jsonb_set(headers, '{errors}', coalesce(headers->'errors', '[]') || $3::jsonb)"
        " WHERE msg_id = $1",
        msg_id,
        backoff,
        [error(attempt)],
    )


async def dead_letter(
    conn: asyncpg.Connection,
    model: Pipeline,
    step: str,
    run_id: str,
    payload: dict[str, Any] | None = None,
    *,
    msg_id: int = 1,
    attempts: int = 3,
    error_type: str = "TimeoutError",
    message: str = "SAP did not answer within 30s",
    permanent: bool = False,
    earlier: list[dict[str, Any]] | None = None,
) -> int:
    """Put a dead letter with the documented body into the pipeline's dead-letter queue.

    Like the runtime, the failed attempts are in the original headers' errors, the last one
    included; `earlier` are the attempts before the last (default: one error per attempt).
    """
    before = earlier if earlier is not None else [error(n) for n in range(1, attempts)]
    last = {**error(attempts, message=message), "type": error_type}
    original = headers(run_id, model, step, errors=[*before, last])
    body = {
        "pipeline": model.name,
        "step": step,
        "queue": f"{model.name}__{step}",
        "run_id": run_id,
        "msg_id": msg_id,
        "payload": payload if payload is not None else {"order": 1},
        "headers": original,
        "attempts": attempts,
        "failed_at": datetime.now(UTC).isoformat(),
        "permanent": permanent,
        "error": {
            "type": error_type,
            "message": message,
            "traceback": (
                "Traceback (most recent call last):\n"
                '  File "shop/steps.py", line 7, in sync\n'
                f"{error_type}: {message}\n"
            ),
        },
    }
    dead_id: int = await conn.fetchval(
        "SELECT * FROM pgmq.send($1, $2::jsonb, $3::jsonb)",
        model.dead_letter_queue,
        body,
        {"run_id": run_id, "pipeline": model.name, "step": step, "dead_letter": True},
    )
    return dead_id


async def complete_run(conn: asyncpg.Connection, model: Pipeline, run_id: str) -> dict[str, int]:
    """Walk one run through every step: each message is read, handed off and archived, and
    the next steps get their messages (a join once all predecessors are done)."""
    ids: dict[str, int] = {}
    for step in model.order:
        preds = model.predecessors(step)
        parent = ids[preds[-1]] if preds else None
        ids[step] = await send(
            conn, model, step, run_id, parent_id=parent, parent_step=preds[-1] if preds else None
        )
        got = await read(conn, model.queue_name(step), only={"run": run_id})
        assert got == [ids[step]]
        await archive(conn, model.queue_name(step), ids[step])
    return ids
