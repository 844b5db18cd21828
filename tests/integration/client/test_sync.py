"""`PGMQueue`, the synchronous facade: every method, the ways to connect, threads, a
running event loop, and transactions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from orchestrator.errors import QueueError
from orchestrator.queue import PGMQueue, QueueNotFound


@pytest.fixture
def pgmq(dsn: str) -> Iterator[PGMQueue]:
    with PGMQueue(database_url=dsn) as queue:
        queue.create_queue("jobs")
        yield queue


class Rollback(Exception):
    pass


def test_send_read_delete(pgmq: PGMQueue) -> None:
    msg_id = pgmq.send("jobs", {"job_type": "sap_sync", "entity_id": 1})
    messages = pgmq.read("jobs", vt=30, qty=1)
    assert len(messages) == 1
    msg = messages[0]
    assert msg["msg_id"] == msg.msg_id == msg_id
    assert msg["message"]["job_type"] == "sap_sync"
    assert msg["read_ct"] == 1
    assert pgmq.delete("jobs", msg["msg_id"]) is True
    assert pgmq.read("jobs") == []


def test_default_vt_comes_from_the_constructor(dsn: str) -> None:
    with PGMQueue(dsn, vt=120) as queue:
        queue.create("jobs")
        queue.send("jobs", 1)
        [msg] = queue.read("jobs")
        assert msg.last_read_at is not None
        assert msg.vt - msg.last_read_at == timedelta(seconds=120)


def test_delays(pgmq: PGMQueue) -> None:
    pgmq.send("jobs", {"a": 1}, delay_seconds=300)
    pgmq.send("jobs", {"a": 2}, 300)
    pgmq.send("jobs", {"a": 3}, delay=timedelta(minutes=5), headers={"h": 1})
    pgmq.send("jobs", {"a": 4}, delay=datetime.now(UTC) + timedelta(hours=1))
    assert pgmq.read("jobs", qty=10) == []
    metrics = pgmq.metrics("jobs")
    assert (metrics.queue_length, metrics.queue_visible_length) == (4, 0)
    with pytest.raises(TypeError, match="not both"):
        pgmq.send("jobs", 1, delay=1, delay_seconds=1)


def test_batches_and_acknowledgements(pgmq: PGMQueue) -> None:
    ids = pgmq.send_batch(
        "jobs", [{"n": n} for n in range(6)], headers=[{"i": n} for n in range(6)]
    )
    assert len(ids) == 6
    later = pgmq.send_batch("jobs", [{"n": 9}], delay_seconds=60)
    messages = pgmq.read("jobs", vt=60, qty=10)
    assert [m["message"]["n"] for m in messages] == list(range(6))
    assert [m["headers"] for m in messages] == [{"i": n} for n in range(6)]
    assert pgmq.delete_batch("jobs", ids[:2]) == ids[:2]
    assert sorted(pgmq.delete("jobs", [ids[2]])) == [ids[2]]
    assert pgmq.archive("jobs", ids[3]) is True
    assert pgmq.archive("jobs", ids[3]) is False
    assert pgmq.archive_batch("jobs", ids[4:]) == ids[4:]
    assert pgmq.archive("jobs", []) == []
    assert pgmq.metrics("jobs").queue_length == 1
    assert pgmq.set_vt("jobs", later[0], 0) is not None
    assert [m.msg_id for m in pgmq.pop("jobs")] == later


def test_read_with_poll_and_conditional(pgmq: PGMQueue) -> None:
    pgmq.send_batch("jobs", [{"k": "a"}, {"k": "b"}])
    assert [m.message for m in pgmq.read("jobs", qty=5, conditional={"k": "b"})] == [{"k": "b"}]
    polled = pgmq.read_with_poll("jobs", vt=10, qty=5, max_poll_seconds=1)
    assert [m.message for m in polled] == [{"k": "a"}]
    assert pgmq.read_with_poll("jobs", max_poll_seconds=0) == []


def test_set_vt_one_and_many(pgmq: PGMQueue) -> None:
    ids = pgmq.send_batch("jobs", [1, 2])
    one = pgmq.set_vt("jobs", ids[0], 600)
    assert one is not None and one.msg_id == ids[0]
    assert len(pgmq.set_vt("jobs", ids, datetime.now(UTC) + timedelta(hours=1))) == 2
    assert pgmq.read("jobs") == []
    assert pgmq.set_vt("jobs", 99999, 1) is None


def test_queue_management(pgmq: PGMQueue) -> None:
    pgmq.create("dlq")
    pgmq.create_queue("fast", unlogged=True)
    pgmq.create_unlogged("faster")
    pgmq.create_partitioned_queue("daily", "1 day", "7 days")
    pgmq.create_partitioned("by_id", 100, 1000)
    infos = {i.queue_name: i for i in pgmq.list_queues()}
    assert set(infos) == {"jobs", "dlq", "fast", "faster", "daily", "by_id"}
    assert infos["fast"].is_unlogged and infos["faster"].is_unlogged
    assert infos["daily"].is_partitioned and infos["by_id"].is_partitioned
    pgmq.send_batch("dlq", [1, 2, 3])
    assert pgmq.purge("dlq") == 3
    assert pgmq.purge_queue("dlq") == 0
    assert {m.queue_name for m in pgmq.metrics_all()} == set(infos)
    assert pgmq.drop_queue("fast") is True
    assert pgmq.drop_queue("fast") is False
    pgmq.enable_notify_insert("jobs", 100)
    pgmq.disable_notify_insert("jobs")


def test_errors_are_the_async_clients(pgmq: PGMQueue) -> None:
    with pytest.raises(QueueNotFound):
        pgmq.send("nowhere", {"a": 1})
    with pytest.raises(QueueError, match="qty must be a positive number"):
        pgmq.read("jobs", qty=0)
    with pytest.raises(QueueError, match="invalid queue name"):
        pgmq.read("no-such name")
    # The client still works after errors.
    assert pgmq.send("jobs", 1) > 0


def test_transaction_commits(pgmq: PGMQueue) -> None:
    with pgmq.transaction() as tx:
        tx.execute("CREATE TABLE orders (id int)")
        tx.execute("INSERT INTO orders VALUES ($1)", 7)
        msg_id = tx.send("jobs", {"order": 7})
        assert pgmq.read("jobs") == []  # not committed yet
    assert [m.msg_id for m in pgmq.read("jobs")] == [msg_id]
    assert [r["id"] for r in pgmq.fetch("SELECT id FROM orders")] == [7]


def test_transaction_rolls_back_on_error(pgmq: PGMQueue) -> None:
    pgmq.send("jobs", {"a": 1})
    with pytest.raises(Rollback), pgmq.transaction() as tx:
        tx.execute("CREATE TABLE orders (id int)")
        [msg] = tx.read("jobs", vt=600)
        tx.delete("jobs", msg.msg_id)
        tx.send("jobs", {"a": 2})
        raise Rollback
    assert [m.message for m in pgmq.read("jobs", qty=10)] == [{"a": 1}]
    assert pgmq.fetch("SELECT to_regclass('orders') AS t")[0]["t"] is None
    with pytest.raises(RuntimeError, match="has ended"):
        tx.send("jobs", 1)
    with (
        pgmq.transaction() as tx2,
        pytest.raises(RuntimeError, match="already in a transaction"),
        tx2.transaction(),
    ):
        pass


def test_connect_with_parts(dsn: str) -> None:
    url = urlsplit(dsn)
    socket_dir = parse_qs(url.query).get("host", [None])[0]
    with PGMQueue(
        host=url.hostname or socket_dir,
        port=url.port or int(parse_qs(url.query).get("port", ["5432"])[0]),
        database=url.path.lstrip("/"),
        username=url.username,
        password=url.password or None,
    ) as queue:
        queue.create("parts")
        assert [i.queue_name for i in queue.list_queues()] == ["parts"]


def test_database_url_from_the_environment(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", dsn)
    with PGMQueue() as queue:
        queue.create("from_env")
        assert "from_env" in [i.queue_name for i in queue.list_queues()]


def test_calls_from_many_threads(pgmq: PGMQueue) -> None:
    def produce(worker: int) -> None:
        for n in range(25):
            pgmq.send("jobs", {"worker": worker, "n": n})

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pgmq.metrics("jobs").queue_length == 100


async def test_usable_inside_a_running_event_loop(pgmq: PGMQueue) -> None:
    msg_id = pgmq.send("jobs", {"from": "async code"})
    await asyncio.sleep(0)
    [msg] = pgmq.read("jobs")
    assert msg["msg_id"] == msg_id


def test_close_is_idempotent_and_final(dsn: str) -> None:
    queue = PGMQueue(dsn)
    queue.create("jobs")
    queue.close()
    queue.close()
    with pytest.raises(RuntimeError, match="closed"):
        queue.send("jobs", 1)


def test_connection_failure_stops_the_thread() -> None:
    from orchestrator.errors import DatabaseUnavailable

    before = threading.active_count()
    with pytest.raises(DatabaseUnavailable):
        PGMQueue("postgresql://nobody@127.0.0.1:1/none", timeout=2)
    assert threading.active_count() == before
