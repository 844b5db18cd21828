"""PostgreSQL restarted in the middle of a run: the worker reconnects and the run completes,
exactly once. Restarting needs the embedded server this test session started."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import asyncpg
import pytest

from tests.integration.process.support import (
    CLI,
    Project,
    assert_exactly_once,
    clean_env,
    effect_count,
    send_runs,
    wait_until,
)


def _server(action: str, pgdata: Path) -> None:
    """`orchestrator db start|stop` on the session's server, from a separate process as a user
    would (a process keeps the embedded server it started registered until it exits)."""
    env = {**clean_env(), "ORCHESTRATOR_HOME": str(pgdata.parent)}
    done = subprocess.run(
        [*CLI, "db", action], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


async def test_a_run_completes_across_a_postgres_restart(
    project: Project, applied: asyncpg.Connection, dsn: str, pg_server: dict[str, object]
) -> None:
    if pg_server["kind"] != "embedded":
        pytest.skip(
            "restarting PostgreSQL needs the embedded test server; "
            f"this session uses a {pg_server['kind']} server"
        )
    pgdata = pg_server["pgdata"]
    assert isinstance(pgdata, Path)
    chain = project.pipeline("chain")
    runs = await send_runs(dsn, "chain", [{"n": n, "sleep": 0.1} for n in range(30)])
    worker = project.start("run", "--dsn", dsn, "--pipeline", "chain", "--drain")
    try:

        async def busy() -> bool:
            return await effect_count(dsn) >= 5

        await wait_until(busy, 60, "handlers to run")
        try:
            await asyncio.to_thread(_server, "stop", pgdata)
            await asyncio.sleep(1.0)
        finally:
            await asyncio.to_thread(_server, "start", pgdata)
        assert worker.wait(120) == 0, worker.output()
    finally:
        worker.stop()
    await assert_exactly_once(dsn, chain, runs)
    assert "wake-up connection down" in worker.output()
