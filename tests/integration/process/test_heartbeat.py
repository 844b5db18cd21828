"""Workers' heartbeat rows: a running worker has one (host, pid, steps), a stopped worker
removes it, a killed worker's row stops moving and is no longer counted as alive."""

from __future__ import annotations

import asyncio
import signal

import asyncpg

from orchestrator.ops.workers import live_workers
from tests.integration.process.support import Project, wait_until


async def test_a_worker_writes_its_heartbeat_and_removes_it_when_it_stops(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    worker = project.start("run", "--dsn", dsn, "--pipeline", "chain")
    try:

        async def listed() -> bool:
            return any(w.pid == worker.process.pid for w in await live_workers(applied))

        await wait_until(listed, 60, "the worker's heartbeat row")
        (row,) = await live_workers(applied)
        assert set(row.steps) == {"chain__first", "chain__second", "chain__third"}
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.output()
        assert await live_workers(applied) == []
        assert await applied.fetchval("SELECT count(*) FROM orchestrator.workers") == 0
    finally:
        worker.stop()


async def test_a_killed_worker_is_no_longer_alive_once_its_heartbeat_ages(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    worker = project.start("run", "--dsn", dsn, "--pipeline", "chain")
    try:

        async def listed() -> bool:
            return len(await live_workers(applied)) == 1

        await wait_until(listed, 60, "the worker's heartbeat row")
        worker.process.kill()
        worker.process.wait()
        await asyncio.sleep(2.5)
        assert await live_workers(applied, alive=2.0) == []  # what the page shows after ALIVE
        assert await applied.fetchval("SELECT count(*) FROM orchestrator.workers") == 1
    finally:
        worker.stop()
