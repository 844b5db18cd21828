"""Insert notifications, `Queue.connect`, and the dict-style access of `Message`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.db import connect
from orchestrator.queue import Message, Queue, notify_channel


async def test_enable_notify_insert_notifies_listeners(q: Queue, dsn: str) -> None:
    await q.enable_notify_insert("jobs", 0)
    listener = await connect(dsn)
    received: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(
            notify_channel("jobs"), lambda *args: received.put_nowait(args[2])
        )
        await q.send("jobs", {"a": 1})
        assert await asyncio.wait_for(received.get(), 10) == "pgmq.q_jobs.INSERT"
        await q.disable_notify_insert("jobs")
        await q.send("jobs", {"a": 2})
        await listener.execute("SELECT 1")  # let any pending notification arrive
        assert received.empty()
    finally:
        await listener.close()


async def test_notify_channel_is_lower_case() -> None:
    assert notify_channel("Jobs") == "pgmq.q_jobs.INSERT"


async def test_connect_awaited_owns_its_pool(dsn: str) -> None:
    q = await Queue.connect(dsn, max_size=2)
    await q.create("jobs")
    msg_id = await q.send("jobs", {"a": 1})
    assert [m.msg_id for m in await q.read("jobs")] == [msg_id]
    pool = q.executor
    await q.close()
    assert pool.is_closing()


async def test_connect_as_context_manager(dsn: str) -> None:
    async with Queue.connect(dsn) as q:
        await q.create("jobs")
        assert [i.queue_name for i in await q.list_queues()] == ["jobs"]
        pool = q.executor
    assert pool.is_closing()


async def test_a_pool_passed_in_stays_open(pool: Any) -> None:
    async with Queue(pool) as q:
        await q.create("jobs")
    assert not pool.is_closing()
    assert await pool.fetchval("SELECT 1") == 1


def test_message_reads_like_a_dict() -> None:
    now = datetime.now(UTC)
    msg = Message(7, 2, now, now, now, {"job_type": "x"}, None)
    assert msg["message"] == {"job_type": "x"}
    assert msg["msg_id"] == 7 and msg["read_ct"] == 2
    assert msg.get("headers", "none") is None
    assert msg.get("nope", "default") == "default"
    assert "vt" in msg and "nope" not in msg
    with pytest.raises(KeyError):
        msg["nope"]
    assert dict(msg) == msg.as_dict()
    assert list(msg) == [
        "msg_id",
        "read_ct",
        "enqueued_at",
        "last_read_at",
        "vt",
        "message",
        "headers",
    ]
    assert len(msg) == 7
    with pytest.raises(AttributeError):
        msg.read_ct = 3  # type: ignore[misc]


async def test_from_record(q: Queue, pool: Any) -> None:
    await q.send("jobs", {"a": 1})
    row = await pool.fetchrow("SELECT * FROM pgmq.read('jobs', 30, 1)")
    assert Message.from_record(row).message == {"a": 1}
