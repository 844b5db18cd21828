"""The clients' FIFO-group, topic and notify-throttle calls: `Queue` (with and without
`conn=`) and the synchronous `PGMQueue`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.errors import QueueError
from orchestrator.queue import InvalidQueueName, PGMQueue, Queue, QueueNotFound


def _grouped(*groups: str) -> list[dict[str, str]]:
    return [{"x-pgmq-group": g} for g in groups]


async def test_grouped_reads(q: Queue) -> None:
    await q.create_fifo_index("jobs")
    await q.create_fifo_indexes_all()
    ids = await q.send_batch("jobs", [1, 2, 3, 4, 5], headers=_grouped("a", "b", "a", "b", "c"))
    assert [m.msg_id for m in await q.read_grouped_head("jobs", 30, 2)] == [ids[0], ids[1]]
    assert [m.msg_id for m in await q.read_grouped_head("jobs", 30, 5)] == [ids[4]]
    await q.delete("jobs", [ids[0], ids[1], ids[4]])
    assert [m.msg_id for m in await q.read_grouped("jobs", 30, 5)] == [ids[2], ids[3]]
    more = await q.send_batch("jobs", [6, 7, 8], headers=_grouped("x", "x", "y"))
    got = await q.read_grouped_rr("jobs", 30, 3)
    assert [m.msg_id for m in got] == [more[0], more[2], more[1]]
    assert got[0].message == 6 and got[0].headers == {"x-pgmq-group": "x"}


@pytest.mark.parametrize(
    "method", ["read_grouped_with_poll", "read_grouped_rr_with_poll", "read_grouped_head_with_poll"]
)
async def test_grouped_reads_with_poll(q: Queue, method: str) -> None:
    assert await getattr(q, method)("jobs", 30, 1, max_poll_seconds=0, poll_interval_ms=10) == []
    msg_id = await q.send("jobs", {"a": 1}, headers={"x-pgmq-group": "g"})
    got = await getattr(q, method)("jobs", 30, 1, max_poll_seconds=1, poll_interval_ms=10)
    assert [m.msg_id for m in got] == [msg_id]


async def test_grouped_reads_inside_a_transaction(q: Queue) -> None:
    msg_id = await q.send("jobs", {"a": 1}, headers={"x-pgmq-group": "g"})
    async with q.transaction() as conn:
        assert [m.msg_id for m in await q.read_grouped("jobs", 30, 1, conn=conn)] == [msg_id]
        # Not committed yet: another session still sees the message visible but cannot take
        # its group (the head is locked).
        assert await q.read_grouped("jobs", 30, 1) == []
    assert await q.read_grouped("jobs", 30, 1) == []  # committed: in flight


async def test_grouped_read_argument_errors(q: Queue) -> None:
    with pytest.raises(InvalidQueueName):
        await q.read_grouped("bad name", 30, 1)
    with pytest.raises(QueueError, match=r"^qty must be a positive number"):
        await q.read_grouped_rr("jobs", 30, 0)
    with pytest.raises(QueueNotFound):
        await q.read_grouped_head("missing", 30, 1)
    with pytest.raises(QueueNotFound):
        await q.create_fifo_index("missing")


async def test_topics(q: Queue) -> None:
    await q.create("order-events")
    await q.bind_topic("orders.#", "order-events")
    await q.bind_topic("orders.created", "jobs")
    routed = await q.test_routing("orders.created")
    assert sorted((b.pattern, b.queue_name, b.bound_at) for b in routed) == [
        ("orders.#", "order-events", None),
        ("orders.created", "jobs", None),
    ]
    assert await q.send_topic("orders.created", {"n": 1}, headers={"h": 1}) == 2
    assert await q.send_topic("orders.shipped", {"n": 2}, delay=3600) == 1
    sent = await q.send_batch_topic("orders.created", [{"b": 1}, {"b": 2}])
    assert [name for name, _ in sent] == ["jobs", "jobs", "order-events", "order-events"]
    at = datetime.now(UTC) + timedelta(hours=1)
    later = await q.send_batch_topic("orders.x", [{"c": 1}], headers=[{"h": 2}], delay=at)
    assert [name for name, _ in later] == ["order-events"]
    messages = await q.read("order-events", 30, 10)
    assert [m.message for m in messages] == [{"n": 1}, {"b": 1}, {"b": 2}]
    bindings = await q.list_topic_bindings()
    assert {(b.pattern, b.queue_name) for b in bindings} == {
        ("orders.#", "order-events"),
        ("orders.created", "jobs"),
    }
    assert [b.pattern for b in await q.list_topic_bindings("jobs")] == ["orders.created"]
    assert await q.unbind_topic("orders.created", "jobs") is True
    assert await q.unbind_topic("orders.created", "jobs") is False


async def test_topic_sends_join_the_callers_transaction(q: Queue) -> None:
    await q.bind_topic("#", "jobs")

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback):
        async with q.transaction() as conn:
            assert await q.send_topic("any.key", {"a": 1}, conn=conn) == 1
            raise Rollback
    assert await q.read("jobs", 30, 10) == []


async def test_topic_argument_errors(q: Queue) -> None:
    with pytest.raises(QueueError, match=r"^routing_key cannot contain consecutive dots"):
        await q.send_topic("a..b", {})
    with pytest.raises(QueueError, match=r"^pattern cannot contain consecutive stars"):
        await q.bind_topic("a.**", "jobs")
    with pytest.raises(QueueError, match=r"^msg cannot be NULL"):
        await q.send_topic("a", None)
    with pytest.raises(QueueError, match=r"^delay cannot be negative"):
        await q.send_topic("a", {}, delay=-1)
    with pytest.raises(QueueError, match=r"^msgs cannot be NULL or empty"):
        await q.send_batch_topic("a", [])
    with pytest.raises(QueueNotFound, match=r'^Queue "nope" does not exist'):
        await q.bind_topic("a", "nope")


async def test_notify_throttles(q: Queue) -> None:
    await q.enable_notify_insert("jobs", 100)
    [throttle] = await q.list_notify_insert_throttles()
    assert (throttle.queue_name, throttle.throttle_interval_ms) == ("jobs", 100)
    await q.update_notify_insert("jobs", 5)
    assert [t.throttle_interval_ms for t in await q.list_notify_insert_throttles()] == [5]
    await q.disable_notify_insert("jobs")
    with pytest.raises(QueueError, match="does not have notify_insert enabled"):
        await q.update_notify_insert("jobs", 5)


@pytest.fixture
def pgmq(dsn: str) -> Iterator[PGMQueue]:
    with PGMQueue(database_url=dsn) as queue:
        queue.create_queue("jobs")
        yield queue


def test_sync_facade(pgmq: PGMQueue) -> None:
    pgmq.create_fifo_index("jobs")
    pgmq.create_fifo_indexes_all()
    ids = pgmq.send_batch("jobs", [1, 2, 3], headers=_grouped("a", "a", "b"))
    assert [m.msg_id for m in pgmq.read_grouped_head("jobs", 30, 5)] == [ids[0], ids[2]]
    pgmq.delete("jobs", [ids[0], ids[2]])
    assert [m.msg_id for m in pgmq.read_grouped("jobs", 30, 5)] == [ids[1]]
    assert pgmq.read_grouped_rr("jobs", 30, 5) == []
    for read in (
        pgmq.read_grouped_with_poll,
        pgmq.read_grouped_rr_with_poll,
        pgmq.read_grouped_head_with_poll,
    ):
        assert read("jobs", 30, 1, 0, 10) == []
    pgmq.bind_topic("a.*", "jobs")
    assert [b.pattern for b in pgmq.test_routing("a.b")] == ["a.*"]
    assert pgmq.send_topic("a.b", {"t": 1}) == 1
    assert [name for name, _ in pgmq.send_batch_topic("a.c", [{"t": 2}])] == ["jobs"]
    assert [b.queue_name for b in pgmq.list_topic_bindings("jobs")] == ["jobs"]
    assert pgmq.unbind_topic("a.*", "jobs") is True
    pgmq.enable_notify_insert("jobs", 0)
    pgmq.update_notify_insert("jobs", 7)
    assert [t.throttle_interval_ms for t in pgmq.list_notify_insert_throttles()] == [7]
    with pgmq.transaction() as tx:
        assert tx.send_topic("a.b", {"t": 3}) == 0
