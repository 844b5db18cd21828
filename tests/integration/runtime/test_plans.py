"""The hand-off's SQL and the trace's run-id lookup use indexes on a large queue.

`claim`, `complete` and `ops_run_messages` are PL/pgSQL functions whose statements run through
EXECUTE, so an EXPLAIN of the call shows nothing of them. Instead each call runs in a
transaction of its own and the table statistics this backend counted during the call
(`pg_stat_xact_user_tables`, no waiting on the collector) must show index scans of the queue
and archive tables and no sequential scan. Those figures also hold what earlier transactions
of the backend counted and did not report yet (PostgreSQL reports them at most once a second;
building the fixture's indexes scans the table), so the test takes the difference across the
call.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from orchestrator.db.named_sql import named_queries

ROWS = 50_000
QUEUE = "big__step"
RUNTIME = named_queries("orchestrator.runtime")
OPS = named_queries("orchestrator.ops")


@pytest.fixture
async def big(conn: asyncpg.Connection) -> str:
    """A step queue of pipeline `big` with many messages, each of its own run, indexed by run
    id as the compiler indexes step queues and archives."""
    await conn.execute("SELECT pgmq.create($1)", QUEUE)
    await conn.execute(
        "SELECT pgmq.send_batch($1, ARRAY(SELECT jsonb_build_object('i', i)"
        " FROM generate_series(1, $2) i),"
        " ARRAY(SELECT jsonb_build_object('run_id', gen_random_uuid()::text)"
        " FROM generate_series(1, $2)))",
        QUEUE,
        ROWS,
    )
    for table in ("q", "a"):
        await conn.execute(
            f"CREATE INDEX {table}_{QUEUE}_run_id ON pgmq.{table}_{QUEUE} ((headers ->> 'run_id'))"
        )
        await conn.execute(f"ANALYZE pgmq.{table}_{QUEUE}")
    return QUEUE


async def _scans(conn: asyncpg.Connection, table: str) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT coalesce(seq_scan, 0) AS seq, coalesce(idx_scan, 0) AS idx"
        " FROM pg_stat_xact_user_tables WHERE relid = $1::regclass",
        f"pgmq.{table}",
    )
    return (0, 0) if row is None else (int(row["seq"]), int(row["idx"]))


def _since(before: tuple[int, int], after: tuple[int, int]) -> tuple[int, int]:
    return after[0] - before[0], after[1] - before[1]


async def _read(conn: asyncpg.Connection, qty: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT msg_id, read_ct FROM pgmq.read($1, 60, $2)", QUEUE, qty)


async def test_claim_finds_the_batch_by_index(conn: asyncpg.Connection, big: str) -> None:
    batch = await _read(conn, 10)
    async with conn.transaction():
        before = await _scans(conn, f"q_{big}")
        ids, cts = [r["msg_id"] for r in batch], [r["read_ct"] for r in batch]
        owned = await conn.fetch(RUNTIME["claim"], big, ids, cts, None)  # runs from the headers
        seq, idx = _since(before, await _scans(conn, f"q_{big}"))
    assert len(owned) == 10
    assert seq == 0 and idx > 0, (seq, idx)


async def test_complete_archives_the_batch_by_index(conn: asyncpg.Connection, big: str) -> None:
    batch = await _read(conn, 10)
    ids, cts = [r["msg_id"] for r in batch], [r["read_ct"] for r in batch]
    runs = [uuid.uuid4() for _ in batch]
    async with conn.transaction():
        before = await _scans(conn, f"q_{big}")
        await conn.fetch(RUNTIME["claim"], big, ids, cts, runs)
        row = await conn.fetchrow(
            RUNTIME["complete"],
            *("big", "step", "[]", True, "big_dlq"),
            *(ids, cts, runs, ["{}"] * len(ids)),
            *([], [], [], []),
            *([], [], []),
            None,
        )
        seq, idx = _since(before, await _scans(conn, f"q_{big}"))
    assert row["handed_off"] == 10
    assert await conn.fetchval(f"SELECT count(*) FROM pgmq.a_{big}") == 10
    assert seq == 0 and idx > 0, (seq, idx)


async def test_trace_finds_a_run_by_index(conn: asyncpg.Connection, big: str) -> None:
    await conn.execute(
        f"SELECT pgmq.archive($1, ARRAY(SELECT generate_series(1, {ROWS // 2})))", big
    )
    await conn.execute(f"ANALYZE pgmq.a_{big}")
    queued, archived = await conn.fetch(
        f"(SELECT headers ->> 'run_id' FROM pgmq.q_{big} ORDER BY msg_id DESC LIMIT 1)"
        f" UNION ALL (SELECT headers ->> 'run_id' FROM pgmq.a_{big} ORDER BY msg_id LIMIT 1)"
    )
    for run_id, place in ((queued[0], "queue"), (archived[0], "archive")):
        async with conn.transaction():
            before = {t: await _scans(conn, f"{t}_{big}") for t in ("q", "a")}
            rows = await conn.fetch(OPS["run_messages"], [big], run_id)
            scans = {t: _since(before[t], await _scans(conn, f"{t}_{big}")) for t in ("q", "a")}
        assert [r["place"] for r in rows] == [place]
        for table, (seq, idx) in scans.items():
            assert seq == 0 and idx > 0, (table, seq, idx)
