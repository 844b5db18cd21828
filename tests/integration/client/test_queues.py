"""Creating, listing, dropping and purging queues, and their metrics, through `Queue`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orchestrator.queue import Queue, QueueInfo, QueueMetrics


async def test_create_is_idempotent_and_listed(q: Queue) -> None:
    await q.create("jobs")
    await q.create("emails")
    queues = await q.list_queues()
    assert [info.queue_name for info in queues] == ["jobs", "emails"]
    assert all(isinstance(info, QueueInfo) for info in queues)
    assert queues[0].is_partitioned is False
    assert queues[0].is_unlogged is False
    assert queues[0].created_at.tzinfo is not None


async def test_names_are_stored_lower_cased(q: Queue) -> None:
    await q.create("Mixed_Case")
    assert "mixed_case" in [info.queue_name for info in await q.list_queues()]
    msg_id = await q.send("MIXED_case", {"a": 1})
    [message] = await q.read("mixed_case")
    assert message.msg_id == msg_id


async def test_create_unlogged(q: Queue, conn: Any) -> None:
    await q.create_unlogged("fast")
    [info] = [i for i in await q.list_queues() if i.queue_name == "fast"]
    assert info.is_unlogged is True
    persistence = await conn.fetchval(
        "SELECT relpersistence::text FROM pg_class WHERE oid = 'pgmq.q_fast'::regclass"
    )
    assert persistence == "u"
    await q.send("fast", {"n": 1})
    assert [m.message for m in await q.read("fast")] == [{"n": 1}]


async def test_create_partitioned_by_id_and_by_time(q: Queue, conn: Any) -> None:
    await q.create_partitioned("by_id", 1000, 10000)
    await q.create_partitioned("by_day", "1 day", "7 days")
    await q.create_partitioned("by_hours", timedelta(hours=6), timedelta(days=2))
    infos = {i.queue_name: i for i in await q.list_queues()}
    assert infos["by_id"].is_partitioned and infos["by_day"].is_partitioned
    assert infos["by_hours"].is_partitioned
    configs = dict(
        await conn.fetch("SELECT queue_name, partition_by FROM pgmq_ext.partition_config")
    )
    assert configs == {"by_id": "msg_id", "by_day": "time", "by_hours": "time"}
    for name in ("by_id", "by_day", "by_hours"):
        msg_id = await q.send(name, {"queue": name})
        [message] = await q.read(name)
        assert (message.msg_id, message.message) == (msg_id, {"queue": name})


async def test_drop_reports_whether_the_queue_existed(q: Queue, conn: Any) -> None:
    await q.send("jobs", {"x": 1})
    assert await q.drop("jobs") is True
    assert await conn.fetchval("SELECT to_regclass('pgmq.q_jobs')") is None
    assert await q.drop("jobs") is False
    assert await q.list_queues() == []


async def test_purge_returns_the_number_of_messages(q: Queue) -> None:
    await q.send_batch("jobs", [{"n": n} for n in range(5)])
    assert await q.purge("jobs") == 5
    assert await q.read("jobs") == []
    assert await q.purge("jobs") == 0


async def test_metrics(q: Queue) -> None:
    empty = await q.metrics("jobs")
    assert isinstance(empty, QueueMetrics)
    assert (empty.queue_name, empty.queue_length, empty.total_messages) == ("jobs", 0, 0)
    assert empty.newest_msg_age_sec is None and empty.oldest_msg_age_sec is None
    await q.send_batch("jobs", [1, 2, 3])
    await q.send("jobs", 4, delay=3600)
    await q.read("jobs", vt=600, qty=1)
    metrics = await q.metrics("jobs")
    assert metrics.queue_length == 4
    assert metrics.queue_visible_length == 2
    assert metrics.total_messages == 4
    assert metrics.oldest_msg_age_sec is not None and metrics.oldest_msg_age_sec >= 0
    assert metrics.scrape_time.tzinfo is not None


async def test_metrics_all(q: Queue) -> None:
    await q.create("other")
    await q.send("other", {"a": 1})
    by_name = {m.queue_name: m for m in await q.metrics_all()}
    assert set(by_name) == {"jobs", "other"}
    assert by_name["other"].queue_length == 1
    assert by_name["jobs"].queue_length == 0
