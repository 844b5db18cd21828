"""Pool exhaustion: far more concurrent handlers than the database lets the worker connect.

The worker logs in as a role granted by `apply --grant` whose CONNECTION LIMIT is a fraction
of what its pool asks for (``--concurrency`` per step, for every step). Opening connections
fails with "too many connections" again and again; the worker must not hang or die: it keeps
going on the connections it has, finishes every run exactly once, and stops on SIGTERM.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orchestrator.db import connect
from tests.faults.conftest import Scenario
from tests.faults.harness import (
    Figures,
    Fleet,
    Shape,
    Size,
    plans,
    send_over,
    verify,
    wait_until,
)
from tests.support.pg import with_login

SHAPE = Shape(visibility_timeout="2s", timeout="1500ms", batch_size=2, max_attempts=10)
PASSWORD = "limited-pw"


@pytest.fixture
async def limited_role(scenario: Scenario, admin_dsn: str) -> AsyncIterator[str]:
    """A login role granted what `run` needs (and the `effects` table of the handlers)."""
    from orchestrator.compiler import apply
    from orchestrator.spec import load_pipelines_or_raise

    role = f"faults_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    finally:
        await admin.close()
    conn = await connect(scenario.dsn)
    try:
        await apply(conn, load_pipelines_or_raise(scenario.root / "pipelines"), grant=role)
        await conn.execute(f"GRANT SELECT, INSERT ON effects TO {role}")
        await conn.execute(f"GRANT USAGE ON SEQUENCE effects_id_seq TO {role}")
    finally:
        await conn.close()
    yield role
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
        )
    finally:
        await admin.close()
    conn = await connect(scenario.dsn)
    try:
        await conn.execute(f"DROP OWNED BY {role}")
    finally:
        await conn.close()
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"DROP ROLE {role}")
    finally:
        await admin.close()


@pytest.mark.shape(SHAPE)
@pytest.mark.parametrize(
    ("size", "concurrency", "limit"),
    [
        pytest.param(Size("small", runs=60, workers=1, faults=0, settle=40), 8, 6, id="small"),
        pytest.param(
            Size("large", runs=2000, workers=1, faults=0, settle=300),
            32,
            10,
            id="large",
            marks=[pytest.mark.faults, pytest.mark.timeout(1800)],
        ),
    ],
)
async def test_more_handlers_than_connections_does_not_hang(
    scenario: Scenario, limited_role: str, size: Size, concurrency: int, limit: int
) -> None:
    s = scenario
    wanted = 3 * concurrency + 3 + 2 + 2  # the pool, the LISTEN and upkeep connections
    await s.probe.execute(f"ALTER ROLE {limited_role} CONNECTION LIMIT {limit}")
    payloads = plans(
        size.runs, s.rng, sleep=0.02, flaky=0.05, max_flaky=2, doomed=0.05, doom="fail"
    )
    figures = Figures("pool exhaustion", size.name)
    fleet = Fleet(
        s.root,
        with_login(s.dsn, limited_role, PASSWORD),
        size.workers,
        "--concurrency",
        str(concurrency),
    )
    started = time.monotonic()
    fleet.start()
    peak = 0

    async def settled() -> bool:
        nonlocal peak
        peak = max(peak, await _connections(s, limited_role))
        return await s.probe.waiting() == 0 and (
            await s.probe.completed() + await s.probe.dead_letters() >= s.runs.total
        )

    try:
        await send_over(s.dsn, payloads, s.runs, seconds=1.0, chunks=5)
        await wait_until(settled, size.settle, "the runs to settle", s.probe.state)
        codes = fleet.stop()
    finally:
        fleet.cleanup()
    refused = fleet.output().count("too many connections")
    figures.seconds = time.monotonic() - started
    figures.faults = {"connections allowed": limit, "wanted": wanted, "refusals logged": refused}
    figures.extra = {"peak connections": peak}
    await verify(s.probe, s.runs, figures)
    assert codes == [0] * size.workers, fleet.output()[-4000:]
    assert refused > 0, "the limit was never reached: the scenario tested nothing"


async def _connections(s: Scenario, role: str) -> int:
    return int(
        await s.probe.fetchval("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role)
    )
