"""Clock and timeouts: handlers that run past their timeout, and leases that expire under load.

Some steps hang past the step's timeout for their first attempts (cancelled, counted as a
failed attempt, retried); some hang on every attempt (dead-lettered with HandlerTimeout).
Meanwhile a worker is frozen with SIGSTOP for longer than the visibility timeout, like a
paused VM or a process starved of CPU, then resumed: its timers fire late, its leases lapse,
other workers carry on. Every run still ends where its plan says, each step handed off once.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.faults.conftest import Scenario, sizes
from tests.faults.harness import (
    DEAD_LETTER_QUEUE,
    STEPS,
    Figures,
    Fleet,
    Shape,
    Size,
    plans,
    send_over,
    verify,
)

MAX_ATTEMPTS = 6
SHAPE = Shape(
    visibility_timeout="2s",
    timeout="500ms",
    batch_size=3,
    max_attempts=MAX_ATTEMPTS,
    initial="50ms",
)


@pytest.mark.shape(SHAPE)
@pytest.mark.parametrize(
    "size",
    sizes(
        Size("small", runs=30, workers=2, faults=1, interval=1.0),
        Size("large", runs=1500, workers=3, faults=10, interval=3.0, settle=300),
    ),
)
async def test_timeouts_and_frozen_workers(scenario: Scenario, size: Size) -> None:
    s = scenario
    payloads = plans(size.runs, s.rng, sleep=0.02, hang=0.1, max_hang=2)
    for payload in payloads[::8]:  # hangs on every attempt of one step
        payload["plan"].setdefault(s.rng.choice(STEPS), {}).update(hang=99, doom="timeout")
    figures = Figures("timeouts", size.name)
    fleet = Fleet(s.root, s.dsn, size.workers)
    started = time.monotonic()
    fleet.start()
    frozen = 0
    try:
        producing = asyncio.create_task(
            send_over(s.dsn, payloads, s.runs, size.interval * (size.faults + 1), chunks=10)
        )
        for _ in range(size.faults):
            await asyncio.sleep(size.interval * s.rng.uniform(0.5, 1.0))
            victim = fleet.processes[s.rng.choice(fleet.alive())]
            victim.send_signal(signal.SIGSTOP)
            frozen += 1
            try:
                await asyncio.sleep(s.rng.uniform(2.5, 4.0))  # longer than the 2s vt
            finally:
                victim.send_signal(signal.SIGCONT)
        await producing
        await s.probe.settled(s.runs, size.settle)
        codes = fleet.stop()
    finally:
        fleet.cleanup()
    timed_out = fleet.output().count("HandlerTimeout")
    figures.seconds = time.monotonic() - started
    figures.faults = {"frozen workers": frozen, "handler timeouts logged": timed_out}
    await verify(s.probe, s.runs, figures)
    assert codes == [0] * size.workers, fleet.output()[-4000:]
    errors = await s.probe.fetch(
        f"SELECT message->'error'->>'type' AS type, (message->>'attempts')::int AS attempts"
        f" FROM pgmq.q_{DEAD_LETTER_QUEUE}"
    )
    assert errors and {e["type"] for e in errors} == {"HandlerTimeout"}
    assert all(e["attempts"] >= MAX_ATTEMPTS for e in errors)
