"""The hand-off's statements find their messages through indexes, not by scanning the queue."""

from __future__ import annotations

import asyncpg

from orchestrator.runtime import handoff
from tests.integration.runtime.conftest import Runtime

PIPE = """
pipeline: big
steps:
  a: {handler: t:a, next: b}
  b: {handler: t:b}
"""


async def _scans(conn: asyncpg.Connection, table: str) -> tuple[int, int]:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await conn.fetchrow(
        "SELECT seq_scan, idx_scan FROM pg_stat_user_tables WHERE schemaname = 'pgmq'"
        " AND relname = $1",
        table,
    )
    return int(row["seq_scan"]), int(row["idx_scan"] or 0)


async def test_claim_and_complete_use_the_primary_key(rt: Runtime) -> None:
    pipeline = await rt.apply(PIPE)
    await rt.conn.execute(
        "SELECT pgmq.send_batch('big__a', ARRAY(SELECT jsonb_build_object('i', i)"
        " FROM generate_series(1, 20000) i))"
    )
    await rt.conn.execute("ANALYZE pgmq.q_big__a")
    target = handoff.StepTarget.of(pipeline, pipeline.step("a"))
    async with rt.pool.acquire() as conn:
        messages = await handoff.read(conn, "big__a", 30, 3)
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("SELECT 1")  # the read's counts reach the statistics
        before = await _scans(rt.conn, "q_big__a")
        async with conn.transaction():
            assert await handoff.claim(conn, "big__a", messages) == {m.msg_id for m in messages}
            outcomes = handoff.Outcomes()
            for m in messages:
                outcomes.done(m, "{}")
            done, _ = await handoff.complete(conn, target, outcomes)
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("SELECT 1")
    after = await _scans(rt.conn, "q_big__a")
    assert done.handed_off == 3 and done.sent == 3
    assert after[0] == before[0], "a sequential scan of the queue table"
    assert after[1] >= before[1] + 2
