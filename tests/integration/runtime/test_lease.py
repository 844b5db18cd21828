"""The fence and the lease: a message is handed off by the worker that owns it, once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg
from prometheus_client import REGISTRY

from orchestrator.db import connect
from orchestrator.observe.metrics import runtime_metrics
from orchestrator.runtime import StepContext, handoff, start
from tests.integration.runtime.conftest import Runtime, unique

STEP = """
pipeline: {name}
defaults: {{visibility_timeout: {vt}, timeout: {timeout}, retry: {{jitter: false}}}}
steps:
  work: {{handler: t:work, batch_size: {batch}, next: done}}
  done: {{handler: t:done}}
"""


def _step(name: str, *, vt: str = "30s", timeout: str = "10s", batch: int = 1) -> str:
    return STEP.format(name=name, vt=vt, timeout=timeout, batch=batch)


async def test_claim_skips_a_message_read_again_by_someone_else(rt: Runtime) -> None:
    await rt.apply(_step("fence"))
    await start("fence", {}, conn=rt.conn)
    consumer = rt.consumer("fence", "work", _never)
    async with rt.pool.acquire() as conn:
        [msg] = await handoff.read(conn, "fence__work", 30, 1)
        # vt expired and another worker read it: read_ct moved on.
        await rt.conn.execute("UPDATE pgmq.q_fence__work SET read_ct = read_ct + 1")
        await consumer._batches.run(_session(conn), [msg], stopping=None)
    [row] = await rt.rows("fence__work")
    assert row["read_ct"] == 2 and "errors" not in row["headers"]
    assert await rt.count("fence__done") == 0


async def test_lease_lost_during_the_handler_rolls_everything_back(rt: Runtime) -> None:
    await rt.apply(_step("lost"))
    await start("lost", {}, conn=rt.conn)
    other = await connect(rt.dsn)
    calls = 0

    async def work(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await ctx.conn.execute("INSERT INTO side_effects VALUES ($1, $2, 'w')", 1, ctx.run_id)
        # Someone takes the message from under us (the claim's KEY SHARE lock does not stop a
        # plain update of read_ct; a real reader would be stopped, this simulates one that won).
        await other.execute("UPDATE pgmq.q_lost__work SET read_ct = read_ct + 1")
        return payload

    consumer = rt.consumer("lost", "work", work)
    try:
        async with rt.pool.acquire() as conn:
            messages = await handoff.read(conn, "lost__work", 30, 1)
            await consumer._batches.run(_session(conn), messages, stopping=None)
    finally:
        await other.close()
    assert calls == 1
    assert await rt.conn.fetchval("SELECT count(*) FROM side_effects") == 0
    assert await rt.count("lost__done") == 0
    [row] = await rt.rows("lost__work")
    assert row["read_ct"] == 2  # left alone for its new owner


async def test_claimed_messages_are_invisible_to_other_readers(rt: Runtime) -> None:
    await rt.apply(_step("hold", vt="1s", timeout="0.9s"))
    await start("hold", {}, conn=rt.conn)
    in_handler = asyncio.Event()
    release = asyncio.Event()

    async def work(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        in_handler.set()
        await release.wait()
        return payload

    consumer = rt.consumer("hold", "work", work)
    stopping = asyncio.Event()
    task = asyncio.create_task(consumer.run(stopping))
    await asyncio.wait_for(in_handler.wait(), 10)
    # Past the message's original vt, another reader still cannot take it.
    await rt.conn.execute("UPDATE pgmq.q_hold__work SET vt = clock_timestamp() - interval '1s'")
    assert await rt.conn.fetch("SELECT * FROM pgmq.read('hold__work', 30, 10)") == []
    release.set()
    stopping.set()
    await task
    assert await rt.count("hold__done") == 1


async def test_slow_batch_past_the_visibility_timeout_runs_once(rt: Runtime) -> None:
    name = unique("slow")
    await rt.apply(_step(name, vt="1s", timeout="0.9s", batch=3))
    await rt.conn.execute(
        "SELECT orchestrator.start_runs($1, array_fill('{}'::jsonb, ARRAY[3]))", name
    )
    calls: Counter[int] = Counter()

    async def work(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        calls[ctx.message_id] += 1
        await ctx.conn.execute(
            "INSERT INTO side_effects VALUES ($1, $2, 'w')", ctx.message_id, ctx.run_id
        )
        await asyncio.sleep(0.6)  # the batch takes ~1.8s, its vt is 1s
        return payload

    metrics = runtime_metrics()
    slow = rt.consumer(name, "work", work, metrics=metrics)
    rival = rt.consumer(name, "work", work, poll_interval=0.1, metrics=metrics)

    async def finished() -> bool:
        return await rt.count(f"{name}__done") == 3

    await rt.drain(slow, rival, until=finished)
    assert sorted(calls.values()) == [1, 1, 1]
    assert await rt.conn.fetchval("SELECT count(*) FROM side_effects") == 3
    assert await rt.count(f"{name}__work", archive=True) == 3
    extensions = REGISTRY.get_sample_value(
        "orchestrator_lease_extensions_total", {"pipeline": name, "step": "work"}
    )
    assert extensions is not None and extensions >= 1


async def test_lease_extension_moves_vt_while_the_handler_runs(rt: Runtime) -> None:
    await rt.apply(_step("ext", vt="4s", timeout="3.9s"))
    await start("ext", {}, conn=rt.conn)
    seen: list[float] = []

    async def work(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        await asyncio.sleep(3)  # past the first extension, due at 2s
        seen.append(
            await rt.aside.fetchval(
                "SELECT extract(epoch FROM vt - clock_timestamp()) FROM pgmq.q_ext__work"
            )
        )
        return payload

    await rt.drain(rt.consumer("ext", "work", work), until=lambda: _count_is(rt, "ext__done", 1))
    # Read at t=0 with vt 4s: without the extension (due at t=2, to t=6) 1s would be left.
    assert seen and float(seen[0]) > 2.0


async def test_connection_lost_cancels_the_handler(rt: Runtime) -> None:
    await rt.apply(_step("kill", vt="3s", timeout="2.9s"))
    await start("kill", {}, conn=rt.conn)
    outcomes: list[str] = []

    async def work(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            pid = ctx.conn.get_server_pid()
            try:
                # The cancel may land while the terminate's own reply is still on its way.
                await rt.aside.execute("SELECT pg_terminate_backend($1)", pid)
                await asyncio.sleep(2.5)
            except asyncio.CancelledError:
                outcomes.append("cancelled")
                raise
            outcomes.append("finished")
        return payload

    await rt.drain(rt.consumer("kill", "work", work), until=lambda: _count_is(rt, "kill__done", 1))
    assert outcomes == ["cancelled"]
    [row] = await rt.rows("kill__work", archive=True)
    # Abandoned, not failed: no attempt was recorded (a timeout would have been), and the
    # message came back after its visibility timeout.
    assert row["read_ct"] == 2 and "errors" not in row["headers"]


async def _count_is(rt: Runtime, queue: str, n: int) -> bool:
    return await rt.count(queue) == n


async def _never(payload: dict[str, Any], ctx: StepContext) -> None:
    raise AssertionError("the handler must not run")


def _session(conn: Any) -> Any:
    from orchestrator.runtime.batch import Session as _Session

    return _Session(conn)


async def test_complete_refuses_messages_no_longer_owned(rt: Runtime) -> None:
    await rt.apply(_step("owned"))
    await start("owned", {}, conn=rt.conn)
    consumer = rt.consumer("owned", "work", _never)
    async with rt.pool.acquire() as conn:
        [msg] = await handoff.read(conn, "owned__work", 30, 1)
        msg.read_ct -= 1  # a stale fence
        outcomes = handoff.Outcomes()
        outcomes.done(msg, "{}")
        try:
            async with conn.transaction():
                await handoff.complete(conn, consumer.target, outcomes)
        except asyncpg.ObjectNotInPrerequisiteStateError as exc:
            assert "lease lost" in str(exc)
        else:
            raise AssertionError("complete accepted a stale fence")
    assert await rt.count("owned__work") == 1
    assert await rt.count("owned__done") == 0


async def test_a_lost_message_does_not_hold_back_the_rest_of_its_batch(rt: Runtime) -> None:
    await rt.apply(_step("part", batch=2))
    await rt.conn.execute(
        "SELECT orchestrator.start_runs('part', ARRAY['{\"i\": 1}', '{\"i\": 2}']::jsonb[])"
    )
    other = await connect(rt.dsn)
    calls: list[int] = []

    async def work(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        calls.append(payload["i"])
        if payload["i"] == 2:  # message 1 is taken by someone else meanwhile
            await other.execute(
                "UPDATE pgmq.q_part__work SET read_ct = read_ct + 1 WHERE message->>'i' = '1'"
            )
        return payload

    consumer = rt.consumer("part", "work", work)
    try:
        async with rt.pool.acquire() as conn:
            messages = await handoff.read(conn, "part__work", 30, 2)
            await consumer._batches.run(_session(conn), messages, stopping=None)
    finally:
        await other.close()
    assert calls == [1, 2]
    assert await rt.count("part__done") == 0
    rows = {r["message"]["i"]: r for r in await rt.rows("part__work")}
    # Message 2 is still ours: given back at once. Message 1 is left to its new owner.
    assert await rt.seconds_until_visible("part__work", rows[2]["msg_id"]) <= 0
    assert await rt.seconds_until_visible("part__work", rows[1]["msg_id"]) > 20


async def test_claim_waits_out_a_readers_passing_lock(rt: Runtime) -> None:
    await rt.apply(_step("pass"))
    await start("pass", {}, conn=rt.conn)
    other = await connect(rt.dsn)
    try:
        async with rt.pool.acquire() as conn:
            [msg] = await handoff.read(conn, "pass__work", 30, 1)
            # A reader whose snapshot still saw the message as visible locks it for a moment.
            passing = other.transaction()
            await passing.start()
            await other.execute(
                "SELECT 1 FROM pgmq.q_pass__work WHERE msg_id = $1 FOR UPDATE", msg.msg_id
            )

            async def let_go() -> None:
                await asyncio.sleep(0.3)
                await passing.rollback()

            letting_go = asyncio.create_task(let_go())
            async with conn.transaction():
                claimed = await handoff.claim(conn, "pass__work", [msg])
            await letting_go
    finally:
        await other.close()
    assert claimed == {msg.msg_id}
