"""A project whose handlers record when each call started and ended, for flow-control tests.

``calls`` holds one row per handler call that committed (a call whose hand-off rolled back,
e.g. of a killed worker, leaves nothing): its run, step, group, sequence number and the
database clock at its start and end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from orchestrator.db import connect
from tests.integration.process.support import Project, make_project

TIMED = '''\
"""Handlers that record their start and end through ctx.conn."""

import asyncio


async def timed(payload, ctx):
    # Whether the run was cancelled before this call started (a committed cancel is visible
    # to this statement): such a call must never happen.
    # `pooled`: the worker's URL named application_name 'pooled' (the one behind PgBouncer).
    started, after_cancel, pooled = await ctx.conn.fetchrow(
        "SELECT clock_timestamp(), EXISTS (SELECT 1 FROM orchestrator.cancelled_runs"
        " WHERE run_id = $1), current_setting('application_name') = 'pooled'", ctx.run_id)
    if payload.get("hold_until_a_cancel_waits") == ctx.step:
        # hold the batch (advisory lock 4242 shows it) until a cancel waits for a run's lock
        await ctx.conn.execute("SELECT pg_advisory_xact_lock(4242)")
        while not await ctx.conn.fetchval(
                "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory'"
                " AND mode = 'ExclusiveLock' AND NOT granted)"):
            await asyncio.sleep(0.05)
    await asyncio.sleep(float(payload.get("sleep", 0)))
    await ctx.conn.execute(
        "INSERT INTO calls (run_id, step, grp, seq, started, ended, attempt, after_cancel,"
        " pooled) VALUES ($1, $2, $3, $4, $5, clock_timestamp(), $6, $7, $8)",
        str(ctx.run_id), ctx.step, payload.get("group"), payload.get("seq"), started,
        ctx.attempt, after_cancel, pooled,
    )
    return payload
'''

CALLS = """
CREATE TABLE IF NOT EXISTS calls (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    step text NOT NULL,
    grp text,
    seq integer,
    started timestamptz NOT NULL,
    ended timestamptz NOT NULL,
    attempt integer,
    after_cancel boolean NOT NULL,
    pooled boolean NOT NULL
)
"""


HELD = (
    "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND granted)"
)
"""Whether a `timed` call with ``hold_until_a_cancel_waits`` is holding its batch."""


def flow_project(root: Path, pipelines: dict[str, str]) -> Project:
    project = make_project(root, pipelines)
    (project.root / "handlers" / "timed.py").write_text(TIMED)
    return project


async def prepare(dsn: str, project: Project) -> None:
    from orchestrator.compiler import apply

    conn = await connect(dsn)
    try:
        await apply(conn, project.pipelines())
        await conn.execute(CALLS)
    finally:
        await conn.close()


async def calls(dsn: str, step: str | None = None) -> list[asyncpg.Record]:
    conn = await connect(dsn)
    try:
        query = "SELECT * FROM calls WHERE $1::text IS NULL OR step = $1 ORDER BY started"
        return list(await conn.fetch(query, step))
    finally:
        await conn.close()


async def fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def fetchval(dsn: str, query: str, *args: Any) -> Any:
    conn = await connect(dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


def most_at_once(rows: list[asyncpg.Record]) -> int:
    """The largest number of calls running at the same moment (from their start/end)."""
    events = sorted(
        [(r["started"], 1) for r in rows] + [(r["ended"], -1) for r in rows],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak
