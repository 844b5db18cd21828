"""A worker killed with SIGKILL releases nothing: its messages come back when their
visibility timeout passes, and every run still completes exactly once."""

from __future__ import annotations

import asyncpg

from tests.integration.process.support import (
    Project,
    assert_exactly_once,
    effect_count,
    send_runs,
    wait_until,
)

HELD = (
    "SELECT (SELECT count(*) FROM pgmq.q_chain__first WHERE vt > now())"
    " + (SELECT count(*) FROM pgmq.q_chain__second WHERE vt > now())"
    " + (SELECT count(*) FROM pgmq.q_chain__third WHERE vt > now())"
)
REDELIVERED = (
    "SELECT count(*) FROM (SELECT read_ct FROM pgmq.a_chain__first"
    " UNION ALL SELECT read_ct FROM pgmq.a_chain__second"
    " UNION ALL SELECT read_ct FROM pgmq.a_chain__third) a WHERE read_ct > 1"
)


async def test_messages_of_a_killed_worker_complete_exactly_once(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    chain = project.pipeline("chain")
    runs = await send_runs(dsn, "chain", [{"n": n, "sleep": 0.3} for n in range(8)])
    worker = project.start("run", "--dsn", dsn, "--pipeline", "chain")
    try:

        async def busy() -> bool:
            return await effect_count(dsn) >= 2 and await applied.fetchval(HELD) > 0

        await wait_until(busy, 60, "handlers in flight")
        worker.process.kill()
        worker.process.wait(30)
    finally:
        worker.stop()
    done_before = await effect_count(dsn)

    result = project.cli("run", "--dsn", dsn, "--pipeline", "chain", "--drain")

    assert result.returncode == 0, result.stderr
    await assert_exactly_once(dsn, chain, runs)
    assert await effect_count(dsn) == len(runs) * 3 > done_before
    # What the killed worker held was read again once its visibility timeout passed.
    assert await applied.fetchval(REDELIVERED) >= 1
