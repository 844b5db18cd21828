"""A long transaction pins xmin: dead rows of the queue tables cannot be vacuumed meanwhile.

Another session holds a REPEATABLE READ snapshot open while backlogs of runs go through. Every
read, retry and hand-off leaves dead tuples behind in the queue tables; VACUUM cannot remove
them while the snapshot is open. The scenario measures the bloat (dead tuples VACUUM had to
keep, table sizes), then ends the transaction and checks that VACUUM reclaims the rows and the
next backlog goes through as well. Throughput (runs per second) is measured for each backlog;
only the large variant's figures mean anything.
"""

from __future__ import annotations

import time

import asyncpg
import pytest

from orchestrator.db import connect
from tests.faults.conftest import Scenario, sizes
from tests.faults.harness import (
    STEP_QUEUES,
    Figures,
    Fleet,
    Probe,
    Shape,
    Size,
    plans,
    queue_bloat,
    send,
    verify,
)

SHAPE = Shape(visibility_timeout="2s", timeout="1500ms", batch_size=4, max_attempts=10)


async def vacuum(probe: Probe) -> dict[str, int]:
    for queue in STEP_QUEUES:
        await probe.execute(f"VACUUM pgmq.q_{queue}")
    return await queue_bloat(probe)


async def backlog(s: Scenario, count: int, timeout: float) -> float:
    """Send `count` runs at once and wait for them: runs per second."""
    started = time.monotonic()
    await send(s.dsn, plans(count, s.rng, flaky=0.05, max_flaky=1), s.runs)
    await s.probe.settled(s.runs, timeout)
    return count / (time.monotonic() - started)


@pytest.mark.shape(SHAPE)
@pytest.mark.parametrize(
    "size",
    sizes(
        Size("small", runs=40, workers=2, faults=1),
        Size("large", runs=1000, workers=3, faults=4, settle=300),
    ),
)
async def test_throughput_recovers_after_a_transaction_pinning_xmin(
    scenario: Scenario, size: Size
) -> None:
    """`size.faults` backlogs of `size.runs` run while xmin is pinned, one more after."""
    s = scenario
    figures = Figures("long transaction", size.name)
    fleet = Fleet(s.root, s.dsn, size.workers)
    started = time.monotonic()
    fleet.start()
    pin: asyncpg.Connection = await connect(s.dsn)
    try:
        await pin.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await pin.fetchval("SELECT count(*) FROM effects")  # takes the snapshot
        pinned_at = time.monotonic()
        assert await s.probe.fetchval(
            "SELECT backend_xmin IS NOT NULL FROM pg_stat_activity WHERE pid = $1",
            pin.get_server_pid(),
        )
        during = [await backlog(s, size.runs, size.settle) for _ in range(size.faults)]
        kept = await vacuum(s.probe)
        await pin.execute("COMMIT")
        held = time.monotonic() - pinned_at
        reclaimed = await vacuum(s.probe)
        after = await backlog(s, size.runs, size.settle)
        codes = fleet.stop()
    finally:
        await pin.close()
        fleet.cleanup()
    figures.seconds = time.monotonic() - started
    figures.faults = {"xmin pinned (s)": round(held, 1)}
    figures.extra = {
        "runs/s pinned": " / ".join(f"{r:.0f}" for r in during),
        "runs/s after": f"{after:.0f}",
        "dead tuples kept by VACUUM while pinned": kept["dead"],
        "queue tables while pinned": f"{kept['bytes'] // 1024} kB",
        "dead tuples after": reclaimed["dead"],
        "queue tables after": f"{reclaimed['bytes'] // 1024} kB",
    }
    await verify(s.probe, s.runs, figures)
    assert codes == [0] * size.workers, fleet.output()[-4000:]
    # The pin really kept VACUUM from cleaning up, and ending it let VACUUM reclaim the rows.
    assert kept["dead"] > 0
    assert reclaimed["dead"] < kept["dead"]
