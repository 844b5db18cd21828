"""Stopping a worker: SIGTERM lets running handlers finish, the shutdown timeout cancels what
is left (releasing it), a second signal exits at once. Nothing is lost or done twice."""

from __future__ import annotations

import asyncio
import signal

import asyncpg

from tests.integration.process.support import (
    Project,
    Worker,
    assert_exactly_once,
    effect_count,
    send_runs,
    wait_until,
)

HELD = "SELECT count(*) FROM pgmq.q_{queue} WHERE vt > now()"


async def _held(conn: asyncpg.Connection, queue: str) -> int:
    """Messages read and not released: their visibility timeout lies ahead."""
    return int(await conn.fetchval(HELD.format(queue=queue)))


async def _wait_for_log(worker: Worker, text: str) -> None:
    async def logged() -> bool:
        return text in worker.output()

    await wait_until(logged, 60, f"{text!r} in the worker's log")


async def test_sigterm_during_a_busy_run_finishes_in_flight_work_and_loses_nothing(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    chain = project.pipeline("chain")
    runs = await send_runs(dsn, "chain", [{"n": n, "sleep": 0.2} for n in range(20)])
    worker = project.start("run", "--dsn", dsn, "--pipeline", "chain")
    try:

        async def busy() -> bool:
            return await effect_count(dsn) >= 4

        await wait_until(busy, 60, "handlers to run")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.output()
    finally:
        worker.stop()
    assert "SIGTERM received: finishing in-flight work" in worker.output()
    # Whatever was in flight finished or was released: no message waits on a dead lease.
    for step in chain.order:
        assert await _held(applied, chain.queue_name(step)) == 0

    result = project.cli("run", "--dsn", dsn, "--pipeline", "chain", "--drain")
    assert result.returncode == 0, result.stderr
    await assert_exactly_once(dsn, chain, runs)


async def _start_long_handlers(project: Project, dsn: str, conn: asyncpg.Connection) -> Worker:
    """A worker running 4 handlers of 20 seconds each (60s visibility timeout)."""
    await send_runs(dsn, "slow", [{"sleep": 20} for _ in range(4)])
    worker = project.start(
        "run", "--dsn", dsn, "--pipeline", "slow", "--shutdown-timeout", "0.5s", "--log-format=text"
    )

    async def all_taken() -> bool:
        return await _held(conn, "slow__only") == 4

    await wait_until(all_taken, 60, "the worker to take all 4 messages")
    await asyncio.sleep(0.2)  # let the handlers start
    return worker


async def test_the_shutdown_timeout_cancels_handlers_and_releases_their_messages(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    worker = await _start_long_handlers(project, dsn, applied)
    try:
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.output()
    finally:
        worker.stop()
    assert "shutdown timeout (0.5s) passed" in worker.output()
    assert await _held(applied, "slow__only") == 0  # visible again at once, not after 60s
    assert await applied.fetchval("SELECT count(*) FROM pgmq.q_slow__only") == 4
    assert await effect_count(dsn) == 0  # the cancelled attempts' writes rolled back


async def test_a_second_signal_exits_at_once_and_releases_messages(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    worker = await _start_long_handlers(project, dsn, applied)
    try:
        worker.process.send_signal(signal.SIGINT)
        await _wait_for_log(worker, "SIGINT received")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 128 + signal.SIGTERM, worker.output()
    finally:
        worker.stop()
    assert "exiting now" in worker.output()
    assert await _held(applied, "slow__only") == 0
    assert await effect_count(dsn) == 0
