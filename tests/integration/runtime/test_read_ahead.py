"""The next batch read ahead by a hand-off is claimed in the round trip of its COMMIT."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from orchestrator.runtime import StepContext, handoff
from orchestrator.runtime.batch import Session
from tests.integration.runtime.conftest import Runtime

STEP = """
pipeline: ahead
defaults: {visibility_timeout: 30s, timeout: 10s}
steps:
  work: {handler: t:work, next: done}
  done: {handler: t:done}
"""


async def _start_two(rt: Runtime) -> None:
    await rt.apply(STEP)
    await rt.conn.execute(
        "SELECT orchestrator.start_runs('ahead', ARRAY['{\"i\": 1}', '{\"i\": 2}']::jsonb[])"
    )


async def _locked(rt: Runtime, msg_id: int) -> bool:
    """Whether another transaction holds a lock on message `msg_id` of ahead__work."""
    try:
        async with rt.aside.transaction():
            await rt.aside.execute(
                "SELECT 1 FROM pgmq.q_ahead__work WHERE msg_id = $1 FOR UPDATE NOWAIT", msg_id
            )
    except asyncpg.LockNotAvailableError:
        return True
    return False


async def _hand_off_the_first(consumer: Any, conn: Any) -> tuple[Session, list[Any]]:
    """Read one message as the loop does (after the flow gate, which lets the hand-off read
    ahead once it has seen the step is not paused) and hand it off; the session and the
    message read ahead (the second one)."""
    session = Session(conn)
    assert await consumer.flow.admit(conn, 1, asyncio.Event()) is not None
    first = await handoff.read(conn, "ahead__work", 30, 1)
    following = await consumer._batches.run(session, first, stopping=asyncio.Event())
    assert [m.body for m in following] == [{"i": 2}]
    return session, following


async def test_the_batch_read_ahead_is_claimed_with_the_commit(rt: Runtime) -> None:
    await _start_two(rt)
    seen: list[int] = []

    async def work(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        seen.append(payload["i"])
        return payload

    consumer = rt.consumer("ahead", "work", work)
    async with rt.pool.acquire() as conn:
        session, following = await _hand_off_the_first(consumer, conn)
        # The first hand-off committed; its COMMIT began the next transaction and claimed the
        # message read ahead: locked now, its read committed with the hand-off.
        assert session.claimed == {following[0].msg_id}
        assert await rt.count("ahead__done") == 1
        assert await _locked(rt, following[0].msg_id)
        [row] = await rt.rows("ahead__work")
        assert row["read_ct"] == 1
        rest = await consumer._batches.run(session, following, stopping=None)
    assert rest == [] and seen == [1, 2]
    assert await rt.count("ahead__done") == 2
    assert await rt.count("ahead__work") == 0


async def test_a_message_gone_before_the_claim_falls_back_to_the_fenced_claim(
    rt: Runtime,
) -> None:
    await _start_two(rt)
    seen: list[int] = []
    cancelled = False

    async def work(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        nonlocal cancelled
        seen.append(payload["i"])
        if not cancelled:  # the other run is cancelled before this batch commits
            await rt.aside.execute(
                "INSERT INTO orchestrator.cancelled_runs (run_id, pipeline)"
                " SELECT (headers->>'run_id')::uuid, 'ahead' FROM pgmq.q_ahead__work"
                " WHERE message->>'i' = '2'"
            )
            cancelled = True
        return payload

    consumer = rt.consumer("ahead", "work", work)
    async with rt.pool.acquire() as conn:
        session, following = await _hand_off_the_first(consumer, conn)
        # The claim in the COMMIT's round trip deleted the cancelled run's message and so got
        # fewer than it read: it claimed nothing, and the transaction is open and usable.
        assert session.claimed == frozenset()
        assert conn.is_in_transaction()
        assert await conn.fetchval("SELECT 1") == 1
        rest = await consumer._batches.run(session, following, stopping=None)
        assert not conn.is_in_transaction()
    assert rest == [] and seen == [1]  # the cancelled run's handler never started
    assert [r["message"] for r in await rt.rows("ahead__done")] == [{"i": 1}]
