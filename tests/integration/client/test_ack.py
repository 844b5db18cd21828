"""Acknowledging: delete and archive (one and many), and moving vt with set_vt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.errors import QueueError
from orchestrator.queue import Queue


async def test_delete_one(q: Queue) -> None:
    msg_id = await q.send("jobs", {"a": 1})
    assert await q.delete("jobs", msg_id) is True
    assert await q.delete("jobs", msg_id) is False
    assert await q.read("jobs") == []


async def test_delete_many_returns_the_ids_deleted(q: Queue) -> None:
    ids = await q.send_batch("jobs", [1, 2, 3, 4])
    deleted = await q.delete("jobs", [ids[0], ids[2], 999_999])
    assert sorted(deleted) == [ids[0], ids[2]]
    assert [m.msg_id for m in await q.read("jobs", qty=10)] == [ids[1], ids[3]]
    assert await q.delete("jobs", []) == []
    assert sorted(await q.delete("jobs", (ids[1], ids[3]))) == [ids[1], ids[3]]


async def test_archive_one_moves_the_row(q: Queue, conn: Any) -> None:
    msg_id = await q.send("jobs", {"a": 1}, headers={"h": 1})
    await q.read("jobs")
    assert await q.archive("jobs", msg_id) is True
    assert await q.archive("jobs", msg_id) is False
    row = await conn.fetchrow(
        "SELECT msg_id, read_ct, message, headers, archived_at FROM pgmq.a_jobs"
    )
    assert (row["msg_id"], row["read_ct"], row["message"], row["headers"]) == (
        msg_id,
        1,
        {"a": 1},
        {"h": 1},
    )
    assert row["archived_at"] is not None
    assert (await q.metrics("jobs")).queue_length == 0


async def test_archive_many(q: Queue, conn: Any) -> None:
    ids = await q.send_batch("jobs", [1, 2, 3])
    assert sorted(await q.archive("jobs", [ids[0], ids[1], 12345])) == ids[:2]
    assert await q.archive("jobs", []) == []
    archived = await conn.fetch("SELECT msg_id FROM pgmq.a_jobs ORDER BY msg_id")
    assert [r["msg_id"] for r in archived] == ids[:2]
    assert [m.msg_id for m in await q.read("jobs", qty=10)] == [ids[2]]


async def test_set_vt_in_seconds_hides_the_message(q: Queue) -> None:
    msg_id = await q.send("jobs", {"a": 1})
    updated = await q.set_vt("jobs", msg_id, 3600)
    assert updated is not None
    assert updated.msg_id == msg_id
    assert updated.vt - updated.enqueued_at > timedelta(minutes=59)
    assert await q.read("jobs") == []
    again = await q.set_vt("jobs", msg_id, 0)
    assert again is not None and again.vt <= datetime.now(UTC) + timedelta(seconds=5)
    assert [m.msg_id for m in await q.read("jobs")] == [msg_id]


async def test_set_vt_at_a_datetime_and_as_timedelta(q: Queue) -> None:
    msg_id = await q.send("jobs", {"a": 1})
    at = datetime(2099, 5, 6, 7, 8, 9, tzinfo=UTC)
    updated = await q.set_vt("jobs", msg_id, at)
    assert updated is not None and updated.vt == at
    moved = await q.set_vt("jobs", msg_id, timedelta(seconds=1.5))
    assert moved is not None and moved.vt < at


async def test_set_vt_many(q: Queue) -> None:
    ids = await q.send_batch("jobs", [1, 2, 3])
    updated = await q.set_vt("jobs", ids[:2], 600)
    assert sorted(m.msg_id for m in updated) == ids[:2]
    at = datetime.now(UTC) + timedelta(hours=3)
    assert len(await q.set_vt("jobs", ids, at)) == 3
    assert await q.read("jobs", qty=10) == []


async def test_set_vt_of_an_unknown_message(q: Queue) -> None:
    assert await q.set_vt("jobs", 424242, 10) is None
    assert await q.set_vt("jobs", [424242], 10) == []


async def test_set_vt_refuses_bad_times(q: Queue) -> None:
    msg_id = await q.send("jobs", {"a": 1})
    with pytest.raises(QueueError, match="vt must be a number of seconds >= 0"):
        await q.set_vt("jobs", msg_id, -5)
    with pytest.raises(QueueError, match="timezone-aware"):
        await q.set_vt("jobs", msg_id, datetime(2099, 1, 1))
