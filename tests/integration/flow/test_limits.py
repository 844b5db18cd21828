"""Rate limits, max_in_flight and ordered groups, enforced across two worker processes.

Real workers (`orchestrator run --workers 2`) over real queues; the handlers record the
database clock at their start and end. Bounds are generous where the machine's speed matters,
exact where the limit is the point (never more than max_in_flight at once, never two calls of
a group at once).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.integration.flow.support import calls, flow_project, most_at_once, prepare
from tests.integration.process.support import send_runs, wait_until

RATED = """\
pipeline: rated
steps:
  call_sap:
    handler: handlers.timed:timed
    concurrency: 4
    batch_size: 5
    rate_limit: 20/s
"""

CAPPED = """\
pipeline: capped
defaults:
  visibility_timeout: 3s
  timeout: 2s
steps:
  call_sap:
    handler: handlers.timed:timed
    concurrency: 4
    max_in_flight: 3
"""

GROUPED = """\
pipeline: grouped
defaults:
  visibility_timeout: 3s
  timeout: 2s
steps:
  apply_order:
    handler: handlers.timed:timed
    concurrency: 3
    group_by: customer.id
"""


async def test_the_start_rate_of_two_workers_stays_at_the_limit(tmp_path: Path, dsn: str) -> None:
    project = flow_project(tmp_path, {"rated": RATED})
    await prepare(dsn, project)
    await send_runs(dsn, "rated", [{"seq": n} for n in range(300)])
    worker = project.start("run", "--dsn", dsn, "--workers", "2")
    try:

        async def enough() -> bool:
            return len(await calls(dsn)) >= 240

        await wait_until(enough, 90, "240 calls")
    finally:
        worker.stop()
    starts = [r["started"] for r in await calls(dsn)]
    # After the first second (a rested bucket's burst), count the starts of ten seconds.
    begin = starts[0] + timedelta(seconds=1)
    window = [s for s in starts if begin <= s < begin + timedelta(seconds=10)]
    assert 180 <= len(window) <= 220, f"{len(window)} starts in 10 s at 20/s"


async def test_never_more_than_max_in_flight_at_once_even_when_a_worker_is_killed(
    tmp_path: Path, dsn: str
) -> None:
    project = flow_project(tmp_path, {"capped": CAPPED})
    await prepare(dsn, project)
    runs = await send_runs(dsn, "capped", [{"seq": n, "sleep": 0.2} for n in range(40)])
    first = project.start("run", "--dsn", dsn, log="first.log")
    second = project.start("run", "--dsn", dsn, log="second.log")
    try:

        async def some() -> bool:
            return len(await calls(dsn)) >= 8

        await wait_until(some, 60, "8 calls")
        first.process.kill()  # holds slots it never gives back: they return with its lease
        first.process.wait()

        async def all_done() -> bool:
            return len(await calls(dsn)) >= len(runs)

        await wait_until(all_done, 120, "every run")
    finally:
        first.stop()
        second.stop()
    rows = await calls(dsn)
    assert sorted(r["run_id"] for r in rows) == sorted(runs)  # each once: nothing lost or doubled
    assert most_at_once(rows) <= 3
    assert most_at_once(rows) >= 2  # the cap is shared, not a single worker's concurrency


async def test_groups_run_one_at_a_time_in_send_order_even_when_a_worker_is_killed(
    tmp_path: Path, dsn: str
) -> None:
    project = flow_project(tmp_path, {"grouped": GROUPED})
    await prepare(dsn, project)
    payloads = [
        {"customer": {"id": g}, "group": g, "seq": n, "sleep": 0.1}
        for n in range(10)
        for g in ("a", "b", "c")
    ]
    await send_runs(dsn, "grouped", payloads)
    first = project.start("run", "--dsn", dsn, log="first.log")
    second = project.start("run", "--dsn", dsn, log="second.log")
    try:

        async def some() -> bool:
            return len(await calls(dsn)) >= 6

        await wait_until(some, 60, "6 calls")
        first.process.kill()  # the group heads it held come back when their vt runs out
        first.process.wait()

        async def all_done() -> bool:
            return len(await calls(dsn)) >= len(payloads)

        await wait_until(all_done, 120, "every message")
    finally:
        first.stop()
        second.stop()
    rows = await calls(dsn)
    assert len(rows) == len(payloads)  # nothing lost, nothing handled twice
    for group in ("a", "b", "c"):
        mine = [r for r in rows if r["grp"] == group]
        assert [r["seq"] for r in mine] == list(range(10)), f"group {group} out of order"
        assert most_at_once(mine) == 1, f"group {group} ran two at once"
    assert most_at_once(rows) >= 2  # different groups ran side by side
