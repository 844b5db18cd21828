"""The supervisor with stand-in worker commands (real child processes, no database):
restarts with backoff, fatal exit codes, drain completion and the stdin stop command."""

from __future__ import annotations

import asyncio
import sys

from orchestrator.runtime.supervisor import WORKER_ENV, Supervisor


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_a_worker_that_cannot_start_stops_everything_with_its_code() -> None:
    supervisor = Supervisor(_python("import sys; sys.exit(4)"), 2, restart_initial=0.05)
    assert await asyncio.wait_for(supervisor.run(), 60) == 4
    assert supervisor.starts <= 2  # never restarted


async def test_a_crashing_worker_is_restarted_with_backoff_until_stopped() -> None:
    supervisor = Supervisor(
        _python("import sys; sys.exit(1)"), 1, restart_initial=0.05, restart_cap=0.2
    )
    running = asyncio.create_task(supervisor.run())

    async def restarted() -> None:
        while supervisor.starts < 4:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(restarted(), 60)
    supervisor.stop()
    assert await asyncio.wait_for(running, 60) == 0


async def test_drain_mode_ends_when_every_worker_exits_0() -> None:
    # Each worker finds its index in the environment; a missing one would exit 9 and restart.
    code = f"import os, sys; sys.exit(0 if os.environ.get('{WORKER_ENV}') in ('0', '1') else 9)"
    supervisor = Supervisor(_python(code), 2, drain=True)
    assert await asyncio.wait_for(supervisor.run(), 60) == 0
    assert supervisor.starts == 2


async def test_stop_reaches_workers_through_stdin() -> None:
    waits_for_stop = (
        "import sys; line = sys.stdin.readline(); sys.exit(0 if line == 'stop\\n' else 7)"
    )
    supervisor = Supervisor(_python(waits_for_stop), 2)
    running = asyncio.create_task(supervisor.run())

    async def both_running() -> None:
        while len(supervisor.pids) < 2:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(both_running(), 60)
    supervisor.stop()
    assert await asyncio.wait_for(running, 60) == 0
    assert supervisor.starts == 2
