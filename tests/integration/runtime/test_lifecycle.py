"""run(): stopping, cancellation, wake-ups, concurrency and database errors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from orchestrator.runtime import Fail, StepContext, start, start_many
from tests.integration.runtime.conftest import Runtime, unique

PIPE = """
pipeline: life
queues: {{notify: {{throttle: {throttle}}}}}
defaults: {{visibility_timeout: 60s, timeout: 30s}}
steps:
  work: {{handler: t:work, next: done}}
  done: {{handler: t:done}}
"""


def _pipe(throttle: str = "250ms") -> str:
    return PIPE.format(throttle=throttle)


async def _visible_now(rt: Runtime) -> bool:
    return bool(
        await rt.conn.fetchval("SELECT bool_and(vt <= clock_timestamp()) FROM pgmq.q_life__work")
    )


async def test_cancelling_run_releases_the_messages(rt: Runtime) -> None:
    await rt.apply(_pipe())
    await start("life", {}, conn=rt.conn)
    started = asyncio.Event()

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        await ctx.conn.execute("INSERT INTO side_effects VALUES (1, $1, 'w')", ctx.run_id)
        started.set()
        await asyncio.sleep(60)

    consumer = rt.consumer("life", "work", work)
    task = asyncio.create_task(consumer.run(asyncio.Event()))
    await asyncio.wait_for(started.wait(), 10)
    assert consumer.in_flight == 1
    assert not await _visible_now(rt)  # read with a 60s visibility timeout
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert consumer.in_flight == 0
    assert await _visible_now(rt)
    [row] = await rt.rows("life__work")
    assert row["read_ct"] == 1 and "errors" not in row["headers"]
    assert await rt.conn.fetchval("SELECT count(*) FROM side_effects") == 0
    assert await rt.count("life__done") == 0


async def test_cancelling_run_during_a_query_releases_the_messages(rt: Runtime) -> None:
    await rt.apply(_pipe())
    await start("life", {}, conn=rt.conn)
    started = asyncio.Event()

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        started.set()
        await ctx.conn.execute("SELECT pg_sleep(60)")

    consumer = rt.consumer("life", "work", work)
    task = asyncio.create_task(consumer.run(asyncio.Event()))
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await _visible_now(rt)


async def test_stopping_lets_the_running_handler_finish(rt: Runtime) -> None:
    await rt.apply(_pipe())
    await start_many("life", [{"i": 1}, {"i": 2}], conn=rt.conn)
    started = asyncio.Event()
    proceed = asyncio.Event()

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        started.set()
        await proceed.wait()

    consumer = rt.consumer("life", "work", work)
    stopping = asyncio.Event()
    task = asyncio.create_task(consumer.run(stopping))
    await asyncio.wait_for(started.wait(), 10)
    stopping.set()
    await asyncio.sleep(0.1)
    assert not task.done()  # still finishing its batch
    proceed.set()
    await asyncio.wait_for(task, 10)
    assert await rt.count("life__done") == 1  # the one in flight; the other was not read
    assert await rt.count("life__work") == 1


async def test_wake_reads_at_once(rt: Runtime) -> None:
    await rt.apply(_pipe())
    handled = asyncio.Event()

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        handled.set()

    consumer = rt.consumer("life", "work", work, poll_interval=60)
    stopping = asyncio.Event()
    task = asyncio.create_task(consumer.run(stopping))
    try:
        await asyncio.sleep(0.2)  # idle now
        await start("life", {}, conn=rt.conn)
        consumer.wake()
        await asyncio.wait_for(handled.wait(), 10)  # far sooner than the 60s poll
    finally:
        stopping.set()
        await task


async def test_a_throttled_notification_is_covered_by_the_recheck(rt: Runtime) -> None:
    await rt.apply(_pipe("500ms"))
    handled = asyncio.Event()

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        handled.set()

    consumer = rt.consumer("life", "work", work, poll_interval=60)
    stopping = asyncio.Event()
    task = asyncio.create_task(consumer.run(stopping))
    try:
        await asyncio.sleep(0.2)
        consumer.wake()  # a notification for a message someone else took, say
        await asyncio.sleep(0.1)
        await start("life", {}, conn=rt.conn)  # throttled: no notification for this one
        await asyncio.wait_for(handled.wait(), 10)
    finally:
        stopping.set()
        await task


async def test_concurrency_runs_batches_side_by_side(rt: Runtime) -> None:
    await rt.apply(_pipe())
    await start_many("life", [{"i": i} for i in range(6)], conn=rt.conn)
    running = 0
    most = 0

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.3)
        running -= 1

    async def done() -> bool:
        return await rt.count("life__done") == 6

    await rt.drain(rt.consumer("life", "work", work, concurrency=3), until=done)
    assert most == 3


async def test_run_survives_killed_connections(rt: Runtime) -> None:
    await rt.apply(_pipe())
    consumer = rt.consumer("life", "work", _nothing, poll_interval=0.1)
    stopping = asyncio.Event()
    task = asyncio.create_task(consumer.run(stopping))

    async def handed_off(n: int) -> None:
        async with asyncio.timeout(20):
            while await rt.count("life__done") < n:
                await asyncio.sleep(0.05)

    try:
        await start("life", {}, conn=rt.conn)
        await handed_off(1)
        for _ in range(3):
            await rt.conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            await asyncio.sleep(0.3)
        assert not task.done()
        await start("life", {}, conn=rt.conn)
        await handed_off(2)
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)
    assert await rt.count("life__work", archive=True) == 2


async def _nothing(payload: dict[str, Any], ctx: StepContext) -> None:
    return None


async def _until(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_metrics_count_what_the_batches_did(rt: Runtime) -> None:
    from prometheus_client import REGISTRY

    from orchestrator.observe.metrics import runtime_metrics

    name = unique("metrics")
    await rt.apply(
        f"""
pipeline: {name}
defaults: {{retry: {{max_attempts: 2, jitter: false}}}}
steps:
  work: {{handler: t:work, batch_size: 4, next: done}}
  done: {{handler: t:done}}
"""
    )
    await start_many(name, [{"do": d} for d in ("ok", "ok", "retry", "fail")], conn=rt.conn)
    await rt.send(f"{name}__work", ["poison"])

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        if payload["do"] == "retry":
            raise ValueError("again")
        if payload["do"] == "fail":
            raise Fail("never")

    async def settled() -> bool:
        return await rt.count(f"{name}__done") == 2 and await rt.count(f"{name}_dlq") == 2

    await rt.drain(rt.consumer(name, "work", work, metrics=runtime_metrics()), until=settled)
    labels = {"pipeline": name, "step": "work"}

    def value(metric: str) -> float | None:
        return REGISTRY.get_sample_value(metric, labels)

    assert value("orchestrator_handoffs_total") == 2
    assert value("orchestrator_retries_total") == 1
    assert value("orchestrator_dead_letters_total") == 2
    assert value("orchestrator_failures_total") == 3
    assert value("orchestrator_handler_duration_seconds_count") == 4
