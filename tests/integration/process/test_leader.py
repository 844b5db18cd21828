"""Upkeep leadership: one process per database runs the jobs, a successor takes over when the
holder's connection dies, and a failing job does not cost the lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from orchestrator.runtime.leader import DATABASE_LOCK, Leader, UpkeepJob, lock_key, upkeep_jobs
from orchestrator.spec import parse_pipeline
from tests.integration.process.support import wait_until


class Runs:
    """Which leader ran the job, in order."""

    def __init__(self) -> None:
        self.by: list[int] = []

    def job(self, owner: int) -> UpkeepJob:
        async def record(conn: asyncpg.Connection) -> None:
            assert await conn.fetchval("SELECT 1") == 1
            self.by.append(owner)

        return UpkeepJob("record", 0.05, record)


@pytest.fixture
async def leaders(dsn: str) -> AsyncIterator[Callable[[list[UpkeepJob]], Leader]]:
    stopping = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    def start(jobs: list[UpkeepJob]) -> Leader:
        leader = Leader(dsn, jobs, claim_interval=0.1)
        tasks.append(asyncio.create_task(leader.run(stopping)))
        return leader

    yield start
    stopping.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def test_one_leader_runs_the_jobs_and_a_successor_takes_over(
    conn: asyncpg.Connection, leaders: Callable[[list[UpkeepJob]], Leader]
) -> None:
    runs = Runs()
    first, second = leaders([runs.job(1)]), leaders([runs.job(2)])

    async def one_leads() -> bool:
        return len(runs.by) >= 3

    await wait_until(one_leads, 30, "a leader to run the job")
    holder, other = (first, second) if first.held else (second, first)
    assert holder.held == {DATABASE_LOCK} and other.held == frozenset()
    owner = 1 if holder is first else 2
    assert set(runs.by) == {owner}

    # The holder's connection dies: its lock goes with it and the other process (or the
    # holder, reconnected) takes over. Never both at once.
    assert await conn.fetchval("SELECT pg_terminate_backend($1)", holder.backend_pid)
    count = len(runs.by)

    async def resumed() -> bool:
        return len(runs.by) >= count + 3

    await wait_until(resumed, 30, "upkeep to resume")
    assert len(first.held) + len(second.held) == 1
    # A bigint advisory key shows in pg_locks as classid (high half) and objid (low half).
    assert DATABASE_LOCK > 0
    locks = await conn.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1",
        DATABASE_LOCK,
    )
    assert locks == 1


async def test_a_failing_job_is_logged_and_the_others_keep_running(
    leaders: Callable[[list[UpkeepJob]], Leader], caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(conn: asyncpg.Connection) -> None:
        await conn.execute("SELECT 1 / 0")

    runs = Runs()
    leader = leaders([UpkeepJob("broken", 0.05, broken), runs.job(1)])

    async def ran() -> bool:
        return len(runs.by) >= 3

    await wait_until(ran, 30, "the healthy job to run")
    assert leader.runs["broken"] == 0
    assert leader.held == {DATABASE_LOCK}
    assert "upkeep job 'broken' failed: DivisionByZeroError" in caplog.text


async def test_standard_jobs_maintain_the_database_and_fire_schedules_per_pipeline(
    conn: asyncpg.Connection, leaders: Callable[[list[UpkeepJob]], Leader]
) -> None:
    nightly = parse_pipeline(
        "pipeline: nightly\nschedule: {cron: '0 3 * * *'}\nsteps:\n  go: {handler: m:f}\n"
    )
    plain = parse_pipeline("pipeline: plain\nsteps:\n  go: {handler: m:f}\n")
    jobs = upkeep_jobs([nightly, plain])
    assert [(j.name, j.lock) for j in jobs] == [
        ("maintenance", DATABASE_LOCK),
        ("schedules of nightly", lock_key("schedules nightly")),
    ]
    assert [j.name for j in upkeep_jobs([nightly, plain], schedules=False)] == ["maintenance"]

    await conn.execute("SELECT pgmq.create_partitioned('parts', '1 hour', '1 day')")
    leader = leaders([jobs[0]])

    async def maintained() -> bool:
        return leader.runs["maintenance"] >= 1

    await wait_until(maintained, 30, "maintenance to run")  # ran through, without an error
