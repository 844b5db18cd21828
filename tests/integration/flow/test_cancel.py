"""Cancels while three workers run: nothing of a cancelled run starts after its cancel commits.

Two workers reach PostgreSQL directly (with LISTEN), one through PgBouncer in transaction mode
(no LISTEN, no notifications at all). The test cancels runs while they are at work, waiting
and in flight, each cancel in a transaction of its own, and notes the database clock right
after each cancel returned (committed). Every handler records the database clock at its start
and whether its run's cancel was visible to it then (`after_cancel`, which must never be
true). One variant SIGKILLs a direct worker mid-way.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from orchestrator import cancel
from orchestrator.db import connect
from tests.integration.flow.support import calls, fetch, fetchval, flow_project, prepare
from tests.integration.process.support import send_runs, wait_until
from tests.support.pgbouncer import PgBouncer

PIPELINE = """\
pipeline: two
defaults:
  visibility_timeout: 3s
  timeout: 2s
steps:
  first:
    handler: handlers.timed:timed
    concurrency: 2
    batch_size: 2
    next: [second]
  second:
    handler: handlers.timed:timed
    concurrency: 2
"""

LEFT = "SELECT (SELECT count(*) FROM pgmq.q_two__first) + (SELECT count(*) FROM pgmq.q_two__second)"
# runs with a message in a queue, those held by a worker (vt in the future) first
CANDIDATES = (
    "SELECT DISTINCT ON (run) run, held FROM (SELECT headers->>'run_id' AS run, vt > now() AS held"
    " FROM pgmq.q_two__first UNION ALL SELECT headers->>'run_id', vt > now()"
    " FROM pgmq.q_two__second) m ORDER BY run, held DESC"
)
RUNS = 120
ROUNDS = 12


@pytest.mark.parametrize("kill", [False, True], ids=["all-live", "one-sigkilled"])
async def test_no_handler_of_a_cancelled_run_starts_after_the_cancel_committed(
    tmp_path: Path, dsn: str, pgbouncer: PgBouncer, kill: bool
) -> None:
    project = flow_project(tmp_path, {"two": PIPELINE})
    await prepare(dsn, project)
    runs = await send_runs(dsn, "two", [{"seq": n, "sleep": 0.25} for n in range(RUNS)])
    workers = [
        project.start("run", "--dsn", dsn, log="direct-1.log"),
        project.start("run", "--dsn", dsn, log="direct-2.log"),
        project.start(
            "run", "--dsn", pgbouncer.behind(dsn, application_name="pooled"), log="pooled.log"
        ),
    ]
    cancels: dict[str, dict[str, Any]] = {}
    try:

        async def some() -> bool:
            return len(await calls(dsn)) >= 6

        await wait_until(some, 60, "a few calls")
        cancels = await cancel_while_running(dsn, workers[0] if kill else None)

        async def quiet() -> bool:
            return await fetchval(dsn, LEFT) == 0

        await wait_until(quiet, 120, "the queues to empty")
    finally:
        for worker in workers:
            worker.stop()
    assert "where LISTEN cannot work" in workers[2].output()  # the pooled one hears nothing
    rows = await calls(dsn)
    cancelled = {run for run, c in cancels.items() if c["state"] == "cancelled"}
    assert len(cancelled) >= ROUNDS  # at least one run a round was still going
    assert not [r for r in rows if r["after_cancel"]], "a call saw its run cancelled at its start"
    late = [
        r
        for r in rows
        if r["run_id"] in cancelled and r["started"] >= cancels[r["run_id"]]["committed"]
    ]
    assert late == [], f"{len(late)} calls started after their run's cancel returned"
    # the cancels met handlers at work: some waited for a batch holding their run
    waited = {
        r["run_id"]
        for r in rows
        if r["run_id"] in cancelled and r["ended"] > cancels[r["run_id"]]["began"]
    }
    assert waited, "no cancel met a handler of its run at work"
    # runs not cancelled finished exactly once, on both kinds of workers
    finished = sorted(
        r["run_id"] for r in rows if r["step"] == "second" and r["run_id"] not in cancelled
    )
    assert finished == sorted(set(runs) - cancelled)
    assert {r["pooled"] for r in rows} == {True, False}


async def cancel_while_running(dsn: str, victim: Any) -> dict[str, dict[str, Any]]:
    """Cancel three runs a round (one held by a worker when there is one), each in its own
    transaction; the database clock before each cancel and right after it committed. With a
    `victim`, SIGKILL it after a third of the rounds."""
    conn = await connect(dsn)
    chosen = random.Random(11)
    done: dict[str, dict[str, Any]] = {}
    try:
        for round_ in range(ROUNDS):
            if victim is not None and round_ == ROUNDS // 3:
                victim.process.kill()
                victim.process.wait()
            rows = [r for r in await fetch(dsn, CANDIDATES) if r["run"] not in done]
            held = [r["run"] for r in rows if r["held"]]
            waiting = [r["run"] for r in rows if not r["held"]]
            picks = held[:1] + chosen.sample(waiting, min(2, len(waiting)))
            for run in picks:
                began = await conn.fetchval("SELECT clock_timestamp()")
                outcome = await cancel(run, conn=conn)  # autocommit: committed on return
                committed = await conn.fetchval("SELECT clock_timestamp()")
                done[run] = {"state": outcome.state, "began": began, "committed": committed}
            await asyncio.sleep(0.3)
    finally:
        await conn.close()
    return done
