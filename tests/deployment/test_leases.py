"""Upkeep behind a transaction pooler: lease rows instead of session locks, one holder at a
time, given up on a clean stop so a successor takes over at once."""

from __future__ import annotations

import asyncio

import asyncpg

from orchestrator.runtime.leader import DATABASE_LOCK, Leader, UpkeepJob
from tests.integration.process.support import wait_until


async def test_one_process_holds_the_upkeep_lease_and_hands_it_over_on_stop(
    pooled_dsn: str, conn: asyncpg.Connection
) -> None:
    runs: list[str] = []

    def job(name: str) -> UpkeepJob:
        async def record(job_conn: asyncpg.Connection) -> None:
            assert await job_conn.fetchval("SELECT 1") == 1
            runs.append(name)

        return UpkeepJob("record", 0.05, record)

    first = Leader(pooled_dsn, [job("first")], claim_interval=0.1)
    second = Leader(pooled_dsn, [job("second")], claim_interval=0.1)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.create_task(first.run(stop_first)),
        asyncio.create_task(second.run(stop_second)),
    ]
    try:

        async def ran(count: int) -> bool:
            return len(runs) >= count

        await wait_until(lambda: ran(5), 30, "a leader to run the job")
        assert first.leases and second.leases  # the DSN goes through the pooler
        holder, other = (first, second) if first.held else (second, first)
        assert holder.held == {DATABASE_LOCK} and other.held == frozenset()
        assert set(runs) == {"first" if holder is first else "second"}
        rows = await conn.fetch("SELECT key, holder FROM orchestrator.leases")
        assert [(r["key"], r["holder"]) for r in rows] == [(DATABASE_LOCK, holder.holder)]
        # No session advisory lock is left behind on a server connection.
        assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0

        # The holder stops cleanly: its lease goes at once, long before it would expire.
        (stop_first if holder is first else stop_second).set()
        await asyncio.wait_for(tasks[0 if holder is first else 1], 30)
        count = len(runs)
        await wait_until(lambda: ran(count + 3), 20, "the other process to take over")
        assert other.held == {DATABASE_LOCK}
        assert set(runs[count:]) == {"first" if other is first else "second"}
        owner = await conn.fetchval("SELECT holder FROM orchestrator.leases")
        assert owner == other.holder
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert await conn.fetchval("SELECT count(*) FROM orchestrator.leases") == 0
