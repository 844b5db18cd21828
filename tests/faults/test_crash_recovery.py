"""Crash recovery: SIGKILL a worker of `orchestrator run --workers N` in the middle of a batch.

The killed process releases nothing; its open transaction dies with its connections, so its
handlers' writes vanish with it, and the messages it held come back when their visibility
timeout passes. The supervisor starts a new worker in its place. Every run still completes,
each side effect is committed once, and the dead-letter queue holds exactly the doomed runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.faults.conftest import Scenario, sizes
from tests.faults.harness import (
    CLI,
    Figures,
    Shape,
    Size,
    children,
    clean_env,
    plans,
    send,
    verify,
    wait_until,
)
from tests.support.pgbouncer import PgBouncer

SHAPE = Shape(visibility_timeout="2s", timeout="1500ms", batch_size=4, max_attempts=3)


@pytest.mark.shape(SHAPE)
@pytest.mark.parametrize(
    "size",
    sizes(
        Size("small", runs=30, workers=2, faults=1),
        Size("large", runs=600, workers=3, faults=12),
    ),
)
async def test_workers_killed_mid_batch_are_replaced_and_nothing_is_lost(
    scenario: Scenario, size: Size
) -> None:
    await _kill_workers_mid_batch(scenario, size, "crash recovery")


@pytest.mark.shape(SHAPE)
async def test_workers_killed_mid_batch_behind_pgbouncer(
    scenario: Scenario, pgbouncer: PgBouncer
) -> None:
    """The same, with every worker and every `send` going through PgBouncer in transaction
    mode: a killed worker's client connections close, PgBouncer drops the server connection
    of its open transaction, and PostgreSQL rolls the batch back (the probe stays direct)."""
    pooled = replace(scenario, dsn=pgbouncer.behind(scenario.dsn))
    small = Size("small", runs=30, workers=2, faults=1)
    await _kill_workers_mid_batch(pooled, small, "crash recovery behind pgbouncer")


async def _kill_workers_mid_batch(s: Scenario, size: Size, name: str) -> None:
    payloads = plans(size.runs - size.faults, s.rng, sleep=0.05, doomed=0.1, doom="fail")
    await send(s.dsn, payloads, s.runs)
    figures = Figures(name, size.name)
    started = time.monotonic()
    log = (s.root / "supervisor.log").open("wb")
    supervisor = subprocess.Popen(
        [*CLI, "run", "--dsn", s.dsn, "--workers", str(size.workers), "--log-format", "json"],
        cwd=s.root,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    victims: list[int] = []
    try:
        for k in range(size.faults):
            # A run whose transform handler writes its worker's pid to a file, then takes a
            # second: that worker is killed right there, in the middle of the batch.
            note = s.root / f"inside-batch-{k}"
            announcing = {"transform": {"announce": str(note), "sleep": 1.0}}
            await send(s.dsn, [{"n": -k, "plan": announcing}], s.runs)
            await wait_until(
                lambda note=note: _noted(note, supervisor), 120, f"{note.name} to be written"
            )
            victim = int(note.read_text().split()[0])
            assert victim in children(supervisor.pid)
            os.kill(victim, signal.SIGKILL)
            victims.append(victim)

            async def replaced(victim: int = victim) -> bool:
                now = children(supervisor.pid)
                return len(now) == size.workers and victim not in now

            await wait_until(replaced, 60, "the supervisor to start a new worker")
        await s.probe.settled(s.runs, size.settle)
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
        try:
            code = supervisor.wait(60)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            supervisor.wait()
            raise
        output = (s.root / "supervisor.log").read_text(errors="replace")
    figures.seconds = time.monotonic() - started
    figures.faults = {"kills": len(victims), "restarts": output.count("restarting it in")}
    await verify(s.probe, s.runs, figures)
    assert code == 0, output[-4000:]
    assert figures.faults["restarts"] == len(victims) == size.faults, output[-4000:]
    # Each killed batch held an announcing run's transform message: read again after its vt.
    assert figures.redelivered >= size.faults
    announced = await s.probe.fetchval(
        "SELECT count(*) FROM pgmq.a_faults__transform WHERE message ? 'plan'"
        " AND message->'plan'->'transform' ? 'announce' AND read_ct >= 2"
    )
    assert announced == size.faults


async def _noted(note: Path, supervisor: subprocess.Popen[bytes]) -> bool:
    assert supervisor.poll() is None, "the supervisor exited"
    return note.exists() and note.read_text().strip() != ""
