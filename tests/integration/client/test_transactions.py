"""`conn=`: queue operations inside the caller's own transaction commit or roll back with it."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.queue import Queue


class Rollback(Exception):
    pass


async def test_a_send_in_a_rolled_back_transaction_disappears(q: Queue, conn: Any) -> None:
    with pytest.raises(Rollback):
        async with conn.transaction():
            await conn.execute("CREATE TABLE orders (id int)")
            await q.send("jobs", {"order": 1}, conn=conn)
            await q.send_batch("jobs", [{"order": 2}], conn=conn)
            assert len(await q.read("jobs", vt=0, qty=10, conn=conn)) == 2
            raise Rollback
    assert await q.read("jobs", qty=10) == []
    assert await conn.fetchval("SELECT to_regclass('orders')") is None


async def test_a_send_in_a_committed_transaction_is_delivered(q: Queue, conn: Any) -> None:
    async with conn.transaction():
        await conn.execute("CREATE TABLE orders (id int)")
        await conn.execute("INSERT INTO orders VALUES (1)")
        msg_id = await q.send("jobs", {"order": 1}, conn=conn)
    [message] = await q.read("jobs")
    assert message.msg_id == msg_id
    assert await conn.fetchval("SELECT count(*) FROM orders") == 1


async def test_an_uncommitted_send_is_invisible_to_others(q: Queue, conn: Any) -> None:
    async with conn.transaction():
        await q.send("jobs", {"a": 1}, conn=conn)
        assert await q.read("jobs") == []  # another connection of the pool


async def test_read_and_delete_in_a_transaction_that_rolls_back(q: Queue, conn: Any) -> None:
    msg_id = await q.send("jobs", {"a": 1})
    with pytest.raises(Rollback):
        async with conn.transaction():
            [message] = await q.read("jobs", vt=600, conn=conn)
            assert await q.delete("jobs", message.msg_id, conn=conn) is True
            raise Rollback
    [again] = await q.read("jobs")
    assert (again.msg_id, again.read_ct) == (msg_id, 1)


async def test_every_operation_accepts_conn(q: Queue, conn: Any) -> None:
    async with conn.transaction():
        await q.create("tx_queue", conn=conn)
        await q.create_unlogged("tx_unlogged", conn=conn)
        await q.create_partitioned("tx_parts", conn=conn)
        ids = await q.send_batch("tx_queue", [1, 2, 3, 4, 5], conn=conn)
        await q.send("tx_queue", 6, headers={"h": 1}, delay=0, conn=conn)
        assert len(await q.read_with_poll("tx_queue", qty=1, conn=conn)) == 1
        assert len(await q.pop("tx_queue", conn=conn)) == 1
        assert await q.set_vt("tx_queue", ids[2], 0, conn=conn) is not None
        assert await q.archive("tx_queue", ids[2], conn=conn) is True
        assert await q.archive("tx_queue", [ids[3]], conn=conn) == [ids[3]]
        assert await q.delete("tx_queue", [ids[4]], conn=conn) == [ids[4]]
        assert (await q.metrics("tx_queue", conn=conn)).queue_length == 2
        assert {m.queue_name for m in await q.metrics_all(conn=conn)} >= {"tx_queue"}
        await q.enable_notify_insert("tx_queue", conn=conn)
        await q.disable_notify_insert("tx_queue", conn=conn)
        assert await q.purge("tx_queue", conn=conn) == 2
        names = {i.queue_name for i in await q.list_queues(conn=conn)}
        assert {"tx_queue", "tx_unlogged", "tx_parts"} <= names
        assert await q.drop("tx_unlogged", conn=conn) is True
        # Other connections do not see the new queues before the commit.
        assert "tx_queue" not in {i.queue_name for i in await q.list_queues()}
    assert {"tx_queue", "tx_parts"} <= {i.queue_name for i in await q.list_queues()}


async def test_transaction_helper(q: Queue) -> None:
    with pytest.raises(Rollback):
        async with q.transaction() as tx:
            await q.send("jobs", 1, conn=tx)
            raise Rollback
    async with q.transaction() as tx:
        await q.send("jobs", 2, conn=tx)
    assert [m.message for m in await q.read("jobs", qty=5)] == [2]


async def test_a_client_over_one_connection(conn: Any) -> None:
    q = Queue(conn)
    await q.create("solo")
    with pytest.raises(Rollback):
        async with q.transaction() as tx:
            assert tx is conn
            await q.send("solo", 1)
            raise Rollback
    await q.send("solo", 2)
    assert [m.message for m in await q.read("solo", qty=5)] == [2]
    await q.close()
    assert not conn.is_closed()
