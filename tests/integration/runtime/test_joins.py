"""Joins: a step after several predecessors runs once per run, whatever the timing."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrator.db import create_pool
from orchestrator.runtime import StepContext, start_many
from tests.integration.runtime.conftest import Runtime

FAN = """
pipeline: fan
defaults: {{retry: {{jitter: false}}}}
steps:
  start: {{handler: t:start, next: [left, right], batch_size: {batch}}}
  left: {{handler: t:left, next: join, batch_size: {batch}}}
  right: {{handler: t:right, next: join, batch_size: {batch}}}
  join: {{handler: t:join, after: [left, right]}}
"""


async def _tag(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    return {"from": ctx.step, "run": str(ctx.run_id)}


async def test_join_payload_maps_predecessors(rt: Runtime) -> None:
    await rt.apply(FAN.format(batch=1))
    [run_id] = await start_many("fan", [{"n": 1}], conn=rt.conn)

    async def ready() -> bool:
        return await rt.count("fan__join") == 1

    await rt.drain(
        rt.consumer("fan", "start", _tag),
        rt.consumer("fan", "left", _tag),
        rt.consumer("fan", "right", _tag),
        until=ready,
    )
    [msg] = await rt.rows("fan__join")
    assert msg["message"] == {
        "left": {"from": "left", "run": str(run_id)},
        "right": {"from": "right", "run": str(run_id)},
    }
    assert msg["headers"]["step"] == "join" and msg["headers"]["run_id"] == str(run_id)
    assert msg["headers"]["parent_step"] in ("left", "right")
    assert msg["headers"]["spec_hash"] == rt.pipelines["fan"].spec_hash()
    row = await rt.conn.fetchrow("SELECT * FROM orchestrator.joins")
    assert row["completed_at"] is not None and row["expected"] == ["left", "right"]


async def test_join_with_predecessors_finishing_at_once_runs_once(rt: Runtime) -> None:
    runs = 40
    await rt.apply(FAN.format(batch=4))
    run_ids = await start_many("fan", [{"i": i} for i in range(runs)], conn=rt.conn)

    async def fanned() -> bool:
        return await rt.count("fan__left") == runs and await rt.count("fan__right") == runs

    await rt.drain(rt.consumer("fan", "start", _tag), until=fanned)

    # Each run's left and right handlers meet before returning, so both hand-offs (and their
    # join arrivals) race; each consumer has its own pool, like two processes.
    meetings: dict[str, asyncio.Barrier] = {}

    async def meet(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        barrier = meetings.setdefault(str(ctx.run_id), asyncio.Barrier(2))
        try:
            async with asyncio.timeout(2):
                await barrier.wait()
        except TimeoutError:
            pass  # the other side is in another batch; it still races in most runs
        return {"from": ctx.step}

    pool_a = await create_pool(rt.dsn, min_size=1, max_size=4)
    pool_b = await create_pool(rt.dsn, min_size=1, max_size=4)
    try:
        left = rt.consumer("fan", "left", meet, pool=pool_a, concurrency=2)
        right = rt.consumer("fan", "right", meet, pool=pool_b, concurrency=2)

        async def arrived() -> bool:
            return await rt.count("fan__left") + await rt.count("fan__right") == 0

        await rt.drain(left, right, until=arrived)
    finally:
        await pool_a.close()
        await pool_b.close()

    joined = await rt.rows("fan__join")
    assert len(joined) == runs
    assert sorted(m["headers"]["run_id"] for m in joined) == sorted(str(r) for r in run_ids)
    assert all(
        m["message"] == {"left": {"from": "left"}, "right": {"from": "right"}} for m in joined
    )
    assert (
        await rt.conn.fetchval(
            "SELECT count(*) FROM orchestrator.joins WHERE completed_at IS NOT NULL"
        )
        == runs
    )


async def test_join_arrival_rolls_back_with_the_batch(rt: Runtime) -> None:
    await rt.apply(FAN.format(batch=1))
    await start_many("fan", [{}], conn=rt.conn)

    async def fanned() -> bool:
        return await rt.count("fan__left") == 1

    await rt.drain(rt.consumer("fan", "start", _tag), until=fanned)

    async def broken(payload: dict[str, Any], ctx: StepContext) -> None:
        raise RuntimeError("no")

    async def failed() -> bool:
        return bool(
            await rt.conn.fetchval("SELECT count(*) FROM pgmq.q_fan__left WHERE headers ? 'errors'")
        )

    await rt.drain(rt.consumer("fan", "left", broken), until=failed)
    assert await rt.conn.fetchval("SELECT count(*) FROM orchestrator.joins") == 0
