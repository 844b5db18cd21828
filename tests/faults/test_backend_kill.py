"""Backend kill: `pg_terminate_backend` on every connection of the workers, again and again.

Pool connections, the LISTEN connection and the upkeep leader's connection all die, in the
middle of reads, handlers and commits. The worker processes must stay up (no crashed task),
reconnect, and finish every run exactly once.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.conftest import Scenario, sizes
from tests.faults.harness import Figures, Fleet, Probe, Shape, Size, plans, send_over, verify

SHAPE = Shape(visibility_timeout="2s", timeout="1500ms", batch_size=4, max_attempts=10)

TERMINATE = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE application_name LIKE 'faults\\_w%' AND pid <> pg_backend_pid()"
)


CONNECTED = (
    "SELECT count(DISTINCT application_name) FROM pg_stat_activity"
    " WHERE application_name LIKE 'faults\\_w%'"
)


async def _connected(probe: Probe, workers: int, limit: float = 120.0) -> None:
    """Wait until every worker process holds a connection: a worker starting up (importing
    its handlers) has no backend to terminate yet, and killing nothing proves nothing."""
    deadline = time.monotonic() + limit
    while await probe.fetchval(CONNECTED) < workers:
        assert time.monotonic() < deadline, f"the workers did not connect within {limit:.0f} s"
        await asyncio.sleep(0.2)


@pytest.mark.shape(SHAPE)
@pytest.mark.parametrize(
    "size",
    sizes(
        Size("small", runs=30, workers=2, faults=4, interval=0.5),
        Size("large", runs=2000, workers=3, faults=100, interval=0.6),
    ),
)
async def test_workers_survive_their_backends_being_terminated(
    scenario: Scenario, size: Size
) -> None:
    s = scenario
    payloads = plans(
        size.runs, s.rng, sleep=0.02, flaky=0.05, max_flaky=2, doomed=0.05, doom="fail"
    )
    figures = Figures("backend kill", size.name)
    fleet = Fleet(s.root, s.dsn, size.workers)
    started = time.monotonic()
    fleet.start()
    terminated = 0
    try:
        await _connected(s.probe, size.workers)
        producing = asyncio.create_task(
            send_over(s.dsn, payloads, s.runs, size.interval * size.faults, chunks=10)
        )
        for _ in range(size.faults):
            await asyncio.sleep(size.interval * s.rng.uniform(0.5, 1.5))
            terminated += int(await s.probe.fetchval(TERMINATE))
        await producing
        await s.probe.settled(s.runs, size.settle)
        assert fleet.alive() == list(range(size.workers)), fleet.output()[-4000:]
        codes = fleet.stop()
    finally:
        fleet.cleanup()
    figures.seconds = time.monotonic() - started
    figures.faults = {"rounds": size.faults, "backends terminated": terminated}
    await verify(s.probe, s.runs, figures)
    assert codes == [0] * size.workers, fleet.output()[-4000:]
    assert fleet.crashes() == []
    assert terminated >= size.faults
