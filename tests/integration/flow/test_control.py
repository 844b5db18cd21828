"""Backpressure, pause/resume, cancel and deduplicated starts with real worker processes."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.integration.flow.support import HELD, calls, fetch, fetchval, flow_project, prepare
from tests.integration.process.support import CLI, Worker, clean_env, send_runs, wait_until

BACKPRESSURE = """\
pipeline: pressed
steps:
  fast:
    handler: handlers.timed:timed
    concurrency: 2
    batch_size: 2
    next: [slow]
  slow:
    handler: handlers.timed:timed
    max_waiting: 10
"""

TWO_STEPS = """\
pipeline: two
steps:
  first:
    handler: handlers.timed:timed
    concurrency: 2
    next: [second]
  second:
    handler: handlers.timed:timed
    concurrency: 2
"""


VISIBLE_SLOW = "SELECT count(*) FROM pgmq.q_pressed__slow WHERE vt <= now()"


async def test_a_full_successor_holds_its_predecessors_back(tmp_path: Path, dsn: str) -> None:
    project = flow_project(tmp_path, {"pressed": BACKPRESSURE})
    await prepare(dsn, project)
    await send_runs(dsn, "pressed", [{"seq": n, "sleep": 0.05} for n in range(60)])
    worker = project.start("run", "--dsn", dsn, "--workers", "2")
    deepest = 0
    try:
        deadline = time.monotonic() + 120
        while len(await calls(dsn, "slow")) < 60:
            assert time.monotonic() < deadline, "the pipeline did not finish"
            depth = await fetchval(
                dsn, "SELECT count(*) FROM pgmq.q_pressed__slow WHERE vt <= now()"
            )
            deepest = max(deepest, depth)
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
    # Two processes x two loops each may have checked just before the cap was reached, each
    # then handing off one batch of two.
    assert 10 <= deepest <= 10 + 2 * 2 * 2, f"{deepest} visible messages behind a cap of 10"
    assert len(await calls(dsn, "fast")) == 60


async def test_pause_stops_reading_within_a_second_and_resume_carries_on(
    tmp_path: Path, dsn: str
) -> None:
    project = flow_project(tmp_path, {"two": TWO_STEPS})
    await prepare(dsn, project)
    worker = project.start("run", "--dsn", dsn, "--workers", "2")
    try:
        paused = project.cli("pause", "--dsn", dsn, "two.second")
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout.strip() == "paused two.second"
        await asyncio.sleep(1.5)  # workers look at pauses once a second
        await send_runs(dsn, "two", [{"seq": n} for n in range(10)])

        async def firsts() -> bool:
            return len(await calls(dsn, "first")) == 10

        await wait_until(firsts, 60, "the first step")
        await asyncio.sleep(2)
        assert await calls(dsn, "second") == []
        assert await fetchval(dsn, "SELECT count(*) FROM pgmq.q_two__second") == 10
        again = project.cli("pause", "--dsn", dsn, "two.second")
        assert again.stdout.strip() == "two.second was paused already"
        resumed = project.cli("resume", "--dsn", dsn, "two.second")
        assert resumed.stdout.strip() == "resumed two.second", resumed.stderr

        async def seconds() -> bool:
            return len(await calls(dsn, "second")) == 10

        await wait_until(seconds, 60, "the second step after resume")
    finally:
        worker.stop()
    missing = project.cli("pause", "--dsn", dsn, "two.third")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "orchestrator: error: pipeline 'two' has no step 'third'"


async def test_nothing_of_a_cancelled_run_runs_after_the_cancel_committed(
    tmp_path: Path, dsn: str
) -> None:
    project = flow_project(tmp_path, {"two": TWO_STEPS})
    await prepare(dsn, project)
    assert project.cli("pause", "--dsn", dsn, "two.second").returncode == 0  # runs stay open
    runs = await send_runs(dsn, "two", [{"seq": n, "sleep": 0.3} for n in range(60)])
    worker = project.start("run", "--dsn", dsn, "--workers", "2")
    try:

        async def started() -> bool:
            return len(await calls(dsn)) >= 6

        await wait_until(started, 60, "a few calls")
        doomed = runs[30:]  # some in flight in `first`, some waiting there, some in `second`
        result = project.cli("cancel", "--dsn", dsn, *doomed)
        assert result.returncode == 0, result.stderr
        assert len([x for x in result.stdout.splitlines() if x.startswith("cancelled ")]) == 30
        assert project.cli("resume", "--dsn", dsn, "two.second").returncode == 0

        async def quiet() -> bool:
            return await fetchval(dsn, LEFT) == 0

        await wait_telling(dsn, worker, quiet, 120, "the queues to empty")
    finally:
        worker.stop()
    cancelled = {r["run_id"]: r["cancelled_at"] for r in await fetch(dsn, CANCELLED)}
    assert set(cancelled) == set(doomed)
    rows = await calls(dsn)
    late = [r for r in rows if r["after_cancel"]]
    assert late == [], f"{len(late)} calls of cancelled runs started after the cancel committed"
    assert not [r for r in rows if r["step"] == "second" and r["run_id"] in cancelled]
    assert sorted(r["run_id"] for r in rows if r["step"] == "second") == sorted(runs[:30])
    again = project.cli("cancel", "--dsn", dsn, runs[0])
    assert again.returncode == 0 and "has finished; nothing changed" in again.stdout, again


ONE_BATCH = """\
pipeline: two
steps:
  first:
    handler: handlers.timed:timed
    batch_size: 5
    next: [second]
  second:
    handler: handlers.timed:timed
"""

SHORT_VT = """\
pipeline: two
defaults:
  visibility_timeout: 2s
  timeout: 1s
steps:
  first:
    handler: handlers.timed:timed
    next: [second]
  second:
    handler: handlers.timed:timed
"""


async def test_a_message_read_while_its_run_was_cancelled_leaves_its_queue(
    tmp_path: Path, dsn: str
) -> None:
    """The cancel passes over a message a reader has locked for a moment; a worker that then
    reads it finds the run cancelled at its claim and deletes it, also when it is the only
    message of its batch (nothing claimed: the delete must still commit)."""
    from orchestrator import cancel
    from orchestrator.db import connect

    project = flow_project(tmp_path, {"two": SHORT_VT})
    await prepare(dsn, project)
    [run] = await send_runs(dsn, "two", [{"seq": 0}])
    reader, canceller = await connect(dsn), await connect(dsn)
    try:
        async with reader.transaction():  # a read in progress: the row is locked until commit
            assert await reader.fetchval("SELECT msg_id FROM pgmq.read('two__first', 1, 1)")
            outcome = await cancel(run, conn=canceller)
        assert (outcome.state, outcome.removed, outcome.in_flight) == ("cancelled", 0, 1)
    finally:
        await reader.close()
        await canceller.close()
    worker = project.start("run", "--dsn", dsn)
    try:

        async def gone() -> bool:
            return await fetchval(dsn, LEFT) == 0

        await wait_telling(dsn, worker, gone, 30, "the message of the cancelled run to leave")
    finally:
        worker.stop()
    assert await calls(dsn) == []


async def test_a_cancel_waits_for_the_batch_holding_the_run_then_removes_what_it_sent(
    tmp_path: Path, dsn: str
) -> None:
    """Five runs read in one batch: while the first one's handler runs, four runs (that one
    included) are cancelled. The cancels wait for the batch, whose handlers all start before
    they commit, then delete what its hand-off sent for the four; the fifth run goes on."""
    project = flow_project(tmp_path, {"two": ONE_BATCH})
    await prepare(dsn, project)
    assert project.cli("pause", "--dsn", dsn, "two.second").returncode == 0
    # the first handler holds the batch until a cancel waits for its run's lock, then 1 s more
    payloads = [{"seq": 0, "hold_until_a_cancel_waits": "first", "sleep": 1}]
    runs = await send_runs(dsn, "two", payloads + [{"seq": n} for n in range(1, 5)])
    worker = project.start("run", "--dsn", dsn)
    try:

        async def holding() -> bool:
            return bool(await fetchval(dsn, HELD))

        await wait_until(holding, 60, "the first handler of the batch")
        assert await fetchval(dsn, "SELECT count(*) FROM pgmq.q_two__first WHERE read_ct = 1") == 5
        result = project.cli("cancel", "--dsn", dsn, *runs[:4])
        assert result.returncode == 0, result.stderr
        assert len([x for x in result.stdout.splitlines() if x.startswith("cancelled ")]) == 4
        # what the batch sent for the cancelled runs is gone; the fifth run's message waits
        second = "SELECT message->>'seq' FROM pgmq.q_two__second"
        assert [r[0] for r in await fetch(dsn, second)] == ["4"]
        assert project.cli("resume", "--dsn", dsn, "two.second").returncode == 0

        async def quiet() -> bool:
            return await fetchval(dsn, LEFT) == 0 and len(await calls(dsn, "second")) == 1

        await wait_until(quiet, 120, "the queues to empty")
    finally:
        worker.stop()
    rows = await calls(dsn)
    assert [(r["step"], r["seq"]) for r in rows] == [("first", n) for n in range(5)] + [
        ("second", 4)
    ]
    assert not [r for r in rows if r["after_cancel"]]
    cancels = [r["cancelled_at"] for r in await fetch(dsn, CANCELLED)]
    assert max(r["ended"] for r in rows if r["step"] == "first") < min(cancels)
    history = await fetch(
        dsn, "SELECT message->>'seq' AS seq FROM pgmq.a_two__first ORDER BY msg_id"
    )
    assert [r["seq"] for r in history] == ["0", "1", "2", "3", "4"]


async def test_a_cancel_that_waits_too_long_for_a_handler_changes_nothing_and_says_so(
    tmp_path: Path, dsn: str
) -> None:
    project = flow_project(tmp_path, {"two": ONE_BATCH})
    await prepare(dsn, project)
    [run] = await send_runs(
        dsn, "two", [{"seq": 0, "hold_until_a_cancel_waits": "first", "sleep": 5}]
    )
    worker = project.start("run", "--dsn", dsn)
    try:

        async def holding() -> bool:
            return bool(await fetchval(dsn, HELD))

        await wait_until(holding, 60, "the handler")
        result = project.cli("cancel", "--dsn", dsn, "--wait", "1s", run)
        assert result.returncode == 1
        assert result.stderr == (
            f"orchestrator: error: run {run} was not cancelled: a handler of it was still at "
            "work after 1 s (a cancel waits for the handlers already started, so that none "
            "starts after it); try again, or wait longer (--wait)\n"
        )
        assert await fetchval(dsn, "SELECT count(*) FROM orchestrator.cancelled_runs") == 0

        async def finished() -> bool:
            return await fetchval(dsn, LEFT) == 0 and len(await calls(dsn, "second")) == 1

        await wait_telling(dsn, worker, finished, 120, "the run to finish")
    finally:
        worker.stop()
    late = project.cli("cancel", "--dsn", dsn, run)
    assert late.returncode == 0 and "has finished; nothing changed" in late.stdout, late


async def wait_telling(
    dsn: str, worker: Worker, condition: Callable[[], Awaitable[bool]], timeout: float, what: str
) -> None:
    """`wait_until`, saying on a timeout which messages are left and what the worker logged."""
    try:
        await wait_until(condition, timeout, what)
    except AssertionError as exc:
        left = [dict(r) for r in await fetch(dsn, LEFT_ROWS)]
        raise AssertionError(f"{exc}; left: {left}\n{worker.output()[-3000:]}") from None


LEFT = "SELECT (SELECT count(*) FROM pgmq.q_two__first) + (SELECT count(*) FROM pgmq.q_two__second)"
CANCELLED = "SELECT run_id::text AS run_id, cancelled_at FROM orchestrator.cancelled_runs"
LEFT_ROWS = (
    "SELECT 'first' AS q, msg_id, read_ct, vt - clock_timestamp() AS hidden_for, headers"
    " FROM pgmq.q_two__first UNION ALL"
    " SELECT 'second', msg_id, read_ct, vt - clock_timestamp(), headers FROM pgmq.q_two__second"
)


async def test_two_processes_sending_one_key_at_once_start_one_run(
    tmp_path: Path, dsn: str
) -> None:
    project = flow_project(tmp_path, {"two": TWO_STEPS})
    await prepare(dsn, project)
    command = [*CLI, "send", "--dsn", dsn, "two", '{"order": 42}', "--key", "order-42"]
    senders = [
        subprocess.Popen(
            command, cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [s.communicate(timeout=60) for s in senders]
    assert [s.returncode for s in senders] == [0, 0]
    ids = {out.decode().strip() for out, _ in outputs}
    assert len(ids) == 1
    notes = [err.decode() for _, err in outputs]
    assert sum("duplicate: run" in n for n in notes) == 1
    assert await fetchval(dsn, "SELECT count(*) FROM pgmq.q_two__first") == 1
    third = project.cli("send", "--dsn", dsn, "two", '{"order": 42}', "--key", "order-42")
    assert third.stdout.strip() in ids and "nothing sent" in third.stderr
