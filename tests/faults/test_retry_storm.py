"""Retry storm: most attempts fail transiently, a few runs fail for good.

Each failing attempt writes its side effect first, then raises: the savepoint must undo the
write, the retry must be scheduled once, and the last attempt must hand off once. With no
other fault injected the attempts are deterministic, so the large suite also checks that each
step handed off on exactly the attempt its plan says (read_ct counts handler calls).
"""

from __future__ import annotations

import random
import time

import pytest

from orchestrator.runtime.bookkeeping import LINES_PER_WINDOW
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

MAX_ATTEMPTS = 5
MAX_LINE_BYTES = 1_000
"""One JSON log line, with room to spare."""
ERRORS_PER_STEP = 3
"""Outcome and error type pairs a step logs here: retried and exhausted transient errors, Fail."""
WORKER_LINES = 40
"""A worker's own lines over a storm: start, stop, connections."""
SHAPE = Shape(
    visibility_timeout="2s",
    timeout="1500ms",
    batch_size=4,
    max_attempts=MAX_ATTEMPTS,
    initial="50ms",
    concurrency=4,
)


def storm(count: int, rng: random.Random) -> list[dict[str, object]]:
    """70% of the steps fail their first 1-4 attempts; 10% of the runs are doomed, most by
    exhausting their attempts, some by `Fail`."""
    payloads = plans(count, rng, flaky=0.7, max_flaky=MAX_ATTEMPTS - 1, doomed=0.1, doom="exhaust")
    for payload in payloads[::7]:
        for entry in payload["plan"].values():
            if "doom" in entry:
                entry["doom"] = "fail"
    return payloads


async def weather(s: Scenario, size: Size) -> tuple[list[int], Fleet]:
    """Run the storm to the end on `size.workers` processes: their exit codes and the fleet."""
    fleet = Fleet(s.root, s.dsn, size.workers)
    fleet.start()
    try:
        await send_over(s.dsn, storm(size.runs, s.rng), s.runs, seconds=2.0, chunks=10)
        await s.probe.settled(s.runs, size.settle)
        return fleet.stop(), fleet
    finally:
        fleet.cleanup()


@pytest.mark.shape(SHAPE)
@pytest.mark.parametrize(
    "size",
    sizes(
        Size("small", runs=40, workers=2, faults=0),
        Size("large", runs=5000, workers=3, faults=0, settle=600),
    ),
)
async def test_a_storm_of_transient_failures_hands_off_each_step_once(
    scenario: Scenario, size: Size
) -> None:
    s = scenario
    figures = Figures("retry storm", size.name)
    started = time.monotonic()
    codes, fleet = await weather(s, size)
    archives = " UNION ALL ".join(f"SELECT read_ct FROM pgmq.a_faults__{step}" for step in STEPS)
    failed = await s.probe.fetchval(f"SELECT coalesce(sum(read_ct - 1), 0) FROM ({archives}) a")
    figures.seconds = time.monotonic() - started
    output = fleet.output()
    tracebacks = output.count("Traceback (most recent call last)")
    figures.faults = {
        "failed attempts": int(failed),
        "log bytes": len(output.encode()),
        "tracebacks logged": tracebacks,
    }
    await verify(s.probe, s.runs, figures)
    assert codes == [0] * size.workers, output[-4000:]
    assert failed > size.runs  # a storm indeed
    # Logs an operator can read: a traceback once per distinct error (type and raising line:
    # three here) per minute, per step and worker, never one each; a failed attempt is one
    # line, up to a budget per step, outcome and error type per minute, and one line sums up the
    # rest, so a storm's log does not grow with its size.
    minutes = int(figures.seconds // 60) + 1
    assert tracebacks <= 3 * len(STEPS) * size.workers * minutes, tracebacks
    lines = (LINES_PER_WINDOW + 1) * ERRORS_PER_STEP * len(STEPS) * size.workers * minutes
    assert len(output.encode()) < MAX_LINE_BYTES * (lines + WORKER_LINES * fleet.starts), (
        f"{len(output.encode())} bytes of log for {failed} failed attempts"
    )

    # Fail is permanent and exhausted attempts are not; each came after its planned failures.
    letters = await s.probe.fetch(
        f"SELECT message->>'run_id' AS run_id, message->>'step' AS step,"
        f" (message->>'attempts')::int AS attempts, (message->>'permanent')::bool AS permanent,"
        f" message->'error'->>'type' AS error FROM pgmq.q_{DEAD_LETTER_QUEUE}"
    )
    for letter in letters:
        entry = s.runs.plans[letter["run_id"]]["plan"][letter["step"]]
        if entry["doom"] == "fail":
            assert letter["permanent"] and letter["error"] == "Fail"
            assert letter["attempts"] >= entry.get("flaky", 0) + 1
        else:
            assert not letter["permanent"] and letter["error"] == "RuntimeError"
            assert letter["attempts"] >= MAX_ATTEMPTS


@pytest.mark.faults
@pytest.mark.timeout(1800)
@pytest.mark.shape(SHAPE)
async def test_every_attempt_runs_its_handler(scenario: Scenario) -> None:
    """read_ct counts attempts (docs/architecture.md): with no fault injected and handlers far
    quicker than the visibility timeout, no lease can lapse, so every read must lead to a
    handler call. A message read and then "taken by another worker before the claim" is an
    attempt spent on nothing: read_ct moves, no handler runs, the message waits a whole vt,
    and a step can reach its dead-letter queue after fewer handler calls than max_attempts.

    Readers of one queue rarely meet at the same row, so the check needs the large storm."""
    s = scenario
    figures = Figures("attempt accounting", "large")
    started = time.monotonic()
    codes, fleet = await weather(s, Size("large", runs=3000, workers=3, faults=0, settle=600))
    figures.seconds = time.monotonic() - started
    phantom = [line for line in fleet.output().splitlines() if "before the claim" in line]
    figures.faults = {"reads lost before the claim": len(phantom)}
    await verify(s.probe, s.runs, figures)
    assert codes == [0, 0, 0]
    rows = await s.probe.fetch("SELECT run_id, step, attempt FROM effects")
    wrong = [
        (r["run_id"], r["step"], r["attempt"])
        for r in rows
        if r["attempt"] != s.runs.plans[r["run_id"]]["plan"].get(r["step"], {}).get("flaky", 0) + 1
    ]
    assert phantom == [], f"{len(phantom)} batches lost messages to a claim race: {phantom[:3]}"
    assert wrong == [], f"{len(wrong)} steps handed off on another attempt than planned"
