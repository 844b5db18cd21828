"""Repeated kills: SIGKILL a random worker every few seconds while runs keep arriving.

The workers are independent `orchestrator run` processes restarted at once after each kill,
as a service manager would. Runs are sent throughout, some fail transiently and a few are
doomed, so kills land on every phase of the hand-off: reading, handlers, the commit.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.conftest import Scenario, sizes
from tests.faults.harness import Figures, Fleet, Shape, Size, plans, send_over, verify

SHAPE = Shape(visibility_timeout="2s", timeout="1500ms", batch_size=4, max_attempts=10)


@pytest.mark.shape(SHAPE)
@pytest.mark.parametrize(
    "size",
    sizes(
        Size("small", runs=60, workers=2, faults=3, interval=1.0),
        Size("large", runs=2000, workers=3, faults=40, interval=2.0),
    ),
)
async def test_a_random_worker_killed_every_few_seconds(scenario: Scenario, size: Size) -> None:
    s = scenario
    payloads = plans(size.runs, s.rng, sleep=0.02, flaky=0.1, max_flaky=2, doomed=0.05, doom="fail")
    figures = Figures("repeated kills", size.name)
    fleet = Fleet(s.root, s.dsn, size.workers)
    started = time.monotonic()
    fleet.start()
    try:
        producing = asyncio.create_task(
            send_over(s.dsn, payloads, s.runs, seconds=size.interval * size.faults, chunks=20)
        )
        for _ in range(size.faults):
            await asyncio.sleep(size.interval * s.rng.uniform(0.5, 1.5))
            victim = s.rng.choice(fleet.alive())
            fleet.kill(victim)
            fleet.start(victim)
        await producing
        await s.probe.settled(s.runs, size.settle)
        codes = fleet.stop()
    finally:
        fleet.cleanup()
    figures.seconds = time.monotonic() - started
    figures.faults = {"kills": fleet.kills, "restarts": fleet.starts - size.workers}
    await verify(s.probe, s.runs, figures)
    assert codes == [0] * size.workers, fleet.output()[-4000:]
    assert fleet.kills == size.faults
