"""`orchestrator send ... --wait`: follow the runs just started until they end.

A run is followed through its trace (`ops.trace`), the read model `orchestrator trace` shows:
it has ended when no message of it is left in a step queue. It failed when any message of it
went to the dead-letter queue; otherwise it is done (a run of a pipeline that does not archive
leaves no record once done, which says the same: nothing pending, no dead letter). Polling
starts fast and slows down to once a second.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from orchestrator.errors import NotFound

if TYPE_CHECKING:
    import asyncpg

FIRST_POLL = 0.1
LAST_POLL = 1.0
ENDED = ("done", "failed", "unknown")


def wait_for_runs(
    dsn: str, pipeline: str, run_ids: Sequence[str], timeout: float | None, json_output: bool
) -> int:
    """Wait for every run, print each outcome (a line, or a JSON list); 0 when all are done,
    1 when any failed or was still running at `timeout`."""
    outcomes = asyncio.run(_follow(dsn, pipeline, run_ids, timeout))
    if json_output:
        listing = [{"run_id": r, "state": s} for r, s in outcomes.items()]
        print(orjson.dumps(listing).decode())
    else:
        for run_id, state in outcomes.items():
            print(f"{run_id} {state}", file=sys.stderr)
    return 0 if all(s in ("done", "unknown") for s in outcomes.values()) else 1


async def _follow(
    dsn: str, pipeline: str, run_ids: Sequence[str], timeout: float | None
) -> dict[str, str]:
    from orchestrator.db import connect

    deadline = None if timeout is None else time.monotonic() + timeout
    states = dict.fromkeys(run_ids, "running")
    pause = FIRST_POLL
    conn = await connect(dsn)
    try:
        while True:
            for run_id in [r for r, s in states.items() if s not in ENDED]:
                states[run_id] = await _state(conn, pipeline, run_id)
            if all(s in ENDED for s in states.values()):
                return states
            if deadline is not None and time.monotonic() >= deadline:
                return {r: s if s in ENDED else f"{s} (timed out)" for r, s in states.items()}
            await asyncio.sleep(pause)
            pause = min(LAST_POLL, pause * 2)
    finally:
        await conn.close()


async def _state(conn: asyncpg.Connection, pipeline: str, run_id: str) -> str:
    from orchestrator.ops.trace import trace_run

    try:
        trace = await trace_run(conn, run_id, [pipeline])
    except NotFound:
        return "done"  # nothing pending and no dead letter: done, its record not archived
    return trace.state
