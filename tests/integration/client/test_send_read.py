"""Sending (one, batches, headers, every kind of delay) and reading (read, poll, pop)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.errors import QueueError
from orchestrator.queue import Message, Queue


async def test_send_then_read_returns_the_message(q: Queue) -> None:
    msg_id = await q.send("jobs", {"job_type": "sap_sync", "entity_id": 123})
    [message] = await q.read("jobs", vt=30, qty=1)
    assert isinstance(message, Message)
    assert message.msg_id == msg_id
    assert message.message == {"job_type": "sap_sync", "entity_id": 123}
    assert message.read_ct == 1
    assert message.headers is None
    assert message.last_read_at is not None
    assert message.vt - message.last_read_at == timedelta(seconds=30)
    assert message.enqueued_at <= message.last_read_at


@pytest.mark.parametrize(
    "payload",
    [{"nested": {"a": [1, 2, {"b": None}]}}, [1, "two", 3.5], "text", 42, True, None],
)
async def test_any_json_value_round_trips(q: Queue, payload: Any) -> None:
    await q.send("jobs", payload)
    [message] = await q.read("jobs")
    assert message.message == payload


async def test_send_with_headers(q: Queue) -> None:
    await q.send("jobs", {"a": 1}, headers={"trace_id": "t-1"})
    [message] = await q.read("jobs")
    assert message.headers == {"trace_id": "t-1"}


async def test_a_read_message_is_hidden_until_its_vt(q: Queue) -> None:
    await q.send("jobs", {"a": 1})
    assert len(await q.read("jobs", vt=60)) == 1
    assert await q.read("jobs", vt=60) == []


async def test_vt_zero_leaves_the_message_visible_and_counts_reads(q: Queue) -> None:
    await q.send("jobs", {"a": 1})
    first = await q.read("jobs", vt=0)
    second = await q.read("jobs", vt=0)
    assert [m.read_ct for m in first + second] == [1, 2]


async def _delay_of(conn: Any, msg_id: int) -> timedelta:
    delay: timedelta = await conn.fetchval(
        "SELECT vt - enqueued_at FROM pgmq.q_jobs WHERE msg_id = $1", msg_id
    )
    return delay


@pytest.mark.parametrize(
    "delay",
    [3600, 3600.0, 3599.75, timedelta(hours=1), timedelta(minutes=59, seconds=59.5)],
)
async def test_delay_in_seconds_or_timedelta(q: Queue, conn: Any, delay: Any) -> None:
    msg_id = await q.send("jobs", {"a": 1}, delay=delay)
    assert await q.read("jobs") == []
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    assert abs((await _delay_of(conn, msg_id)).total_seconds() - seconds) < 5


async def test_delay_as_a_datetime(q: Queue, conn: Any) -> None:
    at = datetime(2100, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    msg_id = await q.send("jobs", {"a": 1}, headers={"h": 1}, delay=at)
    assert await conn.fetchval("SELECT vt FROM pgmq.q_jobs WHERE msg_id = $1", msg_id) == at
    assert await conn.fetchval("SELECT headers FROM pgmq.q_jobs WHERE msg_id = $1", msg_id) == {
        "h": 1
    }
    assert await q.read("jobs") == []


async def test_a_past_datetime_or_zero_delay_is_visible_at_once(q: Queue) -> None:
    await q.send("jobs", 1, delay=datetime.now(UTC) - timedelta(days=1))
    await q.send("jobs", 2, delay=0)
    await q.send("jobs", 3, delay=timedelta(0))
    assert [m.message for m in await q.read("jobs", qty=10)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("delay", "problem"),
    [
        (-1, "seconds >= 0"),
        (-0.5, "seconds >= 0"),
        (timedelta(seconds=-1), "seconds >= 0"),
        (float("nan"), "seconds >= 0"),
        (datetime(2100, 1, 1), "timezone-aware"),
        (True, "seconds, a timedelta or a datetime"),
        ("5", "seconds, a timedelta or a datetime"),
    ],
)
async def test_bad_delays_are_refused(q: Queue, delay: Any, problem: str) -> None:
    with pytest.raises(QueueError, match=problem):
        await q.send("jobs", {"a": 1}, delay=delay)
    with pytest.raises(QueueError, match=problem):
        await q.send_batch("jobs", [{"a": 1}], delay=delay)
    assert (await q.metrics("jobs")).total_messages == 0


async def test_send_batch_returns_ids_in_order(q: Queue) -> None:
    payloads: list[Any] = [{"n": 1}, [1, 2], [[3]], "s", None, {"n": 6}]
    ids = await q.send_batch("jobs", payloads)
    assert len(ids) == len(payloads)
    assert ids == sorted(ids)
    messages = await q.read("jobs", qty=100)
    assert [m.msg_id for m in messages] == ids
    assert [m.message for m in messages] == payloads


async def test_send_batch_with_headers_and_delays(q: Queue) -> None:
    ids = await q.send_batch("jobs", [1, 2], headers=[{"h": 1}, None])
    assert [m.headers for m in await q.read("jobs", qty=5)] == [{"h": 1}, None]
    later = await q.send_batch("jobs", [3, 4], headers=[{"h": 3}, {"h": 4}], delay=3600)
    at = await q.send_batch("jobs", [5], delay=datetime.now(UTC) + timedelta(hours=2))
    soon = await q.send_batch("jobs", [6], delay=timedelta(hours=1))
    assert len(ids + later + at + soon) == 6
    assert await q.read("jobs", qty=10) == []
    assert (await q.metrics("jobs")).queue_length == 6


@pytest.mark.parametrize(
    ("messages", "headers", "problem"),
    [
        ([], None, "at least one message"),
        ([1, 2], [{"h": 1}], r"headers array length \(1\) must match msgs array length \(2\)"),
        ("not a list", None, "must be a list"),
        ([object()], None, "not JSON-serializable"),
    ],
)
async def test_bad_batches_are_refused(q: Queue, messages: Any, headers: Any, problem: str) -> None:
    with pytest.raises(QueueError, match=problem):
        await q.send_batch("jobs", messages, headers=headers)


async def test_read_many_oldest_first(q: Queue) -> None:
    ids = await q.send_batch("jobs", list(range(10)))
    first = await q.read("jobs", vt=30, qty=4)
    rest = await q.read("jobs", vt=30, qty=100)
    assert [m.msg_id for m in first] == ids[:4]
    assert [m.msg_id for m in rest] == ids[4:]


async def test_read_conditional(q: Queue) -> None:
    await q.send_batch("jobs", [{"kind": "a", "n": 1}, {"kind": "b", "n": 2}, {"kind": "a"}])
    matched = await q.read("jobs", qty=10, conditional={"kind": "a"})
    assert [m.message for m in matched] == [{"kind": "a", "n": 1}, {"kind": "a"}]
    assert [m.message for m in await q.read("jobs", qty=10)] == [{"kind": "b", "n": 2}]


async def test_read_with_poll_waits_for_a_message(q: Queue) -> None:
    await q.send("jobs", {"late": True}, delay=1)
    messages = await q.read_with_poll("jobs", vt=30, qty=1, max_poll_seconds=10)
    assert [m.message for m in messages] == [{"late": True}]


async def test_read_with_poll_sees_a_message_sent_meanwhile(q: Queue, pool: Any) -> None:
    async def send_later() -> None:
        await asyncio.sleep(0.3)
        await q.send("jobs", {"n": 1})

    sender = asyncio.create_task(send_later())
    messages = await q.read_with_poll("jobs", qty=5, max_poll_seconds=10, poll_interval_ms=50)
    await sender
    assert [m.message for m in messages] == [{"n": 1}]


async def test_read_with_poll_returns_nothing_after_the_deadline(q: Queue) -> None:
    assert await q.read_with_poll("jobs", max_poll_seconds=0) == []
    assert await q.read_with_poll("jobs", max_poll_seconds=1, conditional={"x": 1}) == []


async def test_pop_reads_and_deletes(q: Queue) -> None:
    ids = await q.send_batch("jobs", ["a", "b", "c"])
    [first] = await q.pop("jobs")
    rest = await q.pop("jobs", 10)
    assert first.msg_id == ids[0] and first.message == "a"
    assert [m.msg_id for m in rest] == ids[1:]
    assert (await q.metrics("jobs")).queue_length == 0
    assert await q.pop("jobs") == []
