"""enable_notify_insert() / disable_notify_insert(): NOTIFY "pgmq.q_<name>.INSERT"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orchestrator.db import connect


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


CHANNEL = "pgmq.q_q.INSERT"


class Listener:
    """A connection that LISTENs on a channel and counts what arrives."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.received: list[tuple[str, str]] = []
        self._arrived = asyncio.Event()

    def __call__(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        self.received.append((channel, payload))
        self._arrived.set()

    async def wait_for(self, count: int, timeout: float = 30.0) -> None:
        async def _wait() -> None:
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(_wait(), timeout)

    async def settle(self) -> None:
        """Give notifications in flight time to arrive, then make a round trip."""
        await asyncio.sleep(0.3)
        await self.conn.fetchval("SELECT 1")
        await asyncio.sleep(0.05)


@pytest.fixture
async def listener(dsn: str) -> AsyncIterator[Listener]:
    c = await connect(dsn)
    listener = Listener(c)
    await c.add_listener(CHANNEL, listener)
    try:
        yield listener
    finally:
        await c.close()


async def test_notify_on_insert(conn: asyncpg.Connection, queue: str, listener: Listener) -> None:
    await conn.execute("SELECT pgmq.enable_notify_insert(queue_name => $1::text)", queue)
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    await listener.wait_for(1)
    assert listener.received == [(CHANNEL, "")]


async def test_notification_is_sent_at_commit(
    conn: asyncpg.Connection, queue: str, listener: Listener
) -> None:
    await conn.execute("SELECT pgmq.enable_notify_insert($1, 0)", queue)
    async with conn.transaction():
        await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
        await listener.settle()
        assert listener.received == []
    await listener.wait_for(1)
    tx = conn.transaction()
    await tx.start()
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    await tx.rollback()
    await listener.settle()
    assert len(listener.received) == 1


async def test_throttle_zero_notifies_every_insert(
    conn: asyncpg.Connection, queue: str, listener: Listener
) -> None:
    await conn.execute(
        "SELECT pgmq.enable_notify_insert(queue_name => $1::text, throttle_interval_ms => 0)",
        queue,
    )
    for _ in range(5):
        await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    await listener.wait_for(5)
    await listener.settle()
    assert len(listener.received) == 5


async def test_throttle_limits_notifications(
    conn: asyncpg.Connection, other_conn: asyncpg.Connection, queue: str, listener: Listener
) -> None:
    # One minute: every send of this test falls within the first notification's interval.
    await conn.execute("SELECT pgmq.enable_notify_insert($1, 60000)", queue)
    for i in range(10):
        sender = conn if i % 2 else other_conn
        await sender.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
        await sender.execute("SELECT pgmq.send_batch($1, ARRAY['{}', '{}']::jsonb[])", queue)
    await listener.wait_for(1)
    await listener.settle()
    assert listener.received == [(CHANNEL, "")]
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_q") == 30


async def test_throttle_lets_the_next_notification_through_after_the_interval(
    conn: asyncpg.Connection, queue: str, listener: Listener
) -> None:
    await conn.execute("SELECT pgmq.enable_notify_insert($1, 200)", queue)
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    await listener.wait_for(1)
    # Wait out the interval on the server's clock, then send again.
    await conn.execute("SELECT pg_sleep(0.3)")
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    await listener.wait_for(2)


async def test_one_notification_per_batch(
    conn: asyncpg.Connection, queue: str, listener: Listener
) -> None:
    await conn.execute("SELECT pgmq.enable_notify_insert($1, 0)", queue)
    await conn.execute(
        "SELECT pgmq.send_batch($1, $2::jsonb[])", queue, [{"i": i} for i in range(100)]
    )
    await listener.wait_for(1)
    await listener.settle()
    assert len(listener.received) == 1


async def test_disable_notify_insert(
    conn: asyncpg.Connection, queue: str, listener: Listener
) -> None:
    await conn.execute("SELECT pgmq.enable_notify_insert($1, 0)", queue)
    await conn.execute("SELECT pgmq.disable_notify_insert(queue_name => $1::text)", queue)
    await conn.execute("SELECT pgmq.disable_notify_insert($1)", queue)  # twice is fine
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    await listener.settle()
    assert listener.received == []
    triggers = await conn.fetchval(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'pgmq.q_q'::regclass"
    )
    assert triggers == 0
    assert await conn.fetchval("SELECT to_regclass('pgmq_ext.q_q_notify')") is None
    # And on again, with another throttle.
    await conn.execute("SELECT pgmq.enable_notify_insert($1, 0)", queue)
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    await listener.wait_for(1)


async def test_enable_twice_replaces_the_throttle(
    conn: asyncpg.Connection, queue: str, listener: Listener
) -> None:
    await conn.execute("SELECT pgmq.enable_notify_insert($1, 60000)", queue)
    await conn.execute("SELECT pgmq.enable_notify_insert($1, 0)", queue)
    for _ in range(3):
        await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    await listener.wait_for(3)
    triggers = await conn.fetchval(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'pgmq.q_q'::regclass"
    )
    assert triggers == 1


async def test_notify_on_a_partitioned_queue(conn: asyncpg.Connection, dsn: str) -> None:
    await conn.execute("SELECT pgmq.create_partitioned('Parts', '10', '100')")
    c = await connect(dsn)
    try:
        listener = Listener(c)
        await c.add_listener("pgmq.q_parts.INSERT", listener)
        await conn.execute("SELECT pgmq.enable_notify_insert('Parts', 0)")
        await conn.execute("SELECT pgmq.send('parts', '{}'::jsonb)")
        # Rows past the premade partitions land in the default partition: still notified.
        await conn.execute(
            "SELECT pgmq.send_batch('parts', $1::jsonb[])", [{"i": i} for i in range(80)]
        )
        await listener.wait_for(2)
    finally:
        await c.close()


async def test_notify_whatever_the_search_path(
    conn: asyncpg.Connection, queue: str, listener: Listener
) -> None:
    """The trigger works whatever the sender's search_path."""
    await conn.execute("SELECT pgmq.enable_notify_insert($1, 0)", queue)
    await conn.execute("SET search_path = ''")
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    await listener.wait_for(1)


async def test_throttle_holds_for_concurrent_senders(
    conn: asyncpg.Connection, dsn: str, queue: str, listener: Listener
) -> None:
    await conn.execute("SELECT pgmq.enable_notify_insert($1, 60000)", queue)
    senders = [await connect(dsn) for _ in range(8)]
    try:

        async def send(c: asyncpg.Connection) -> None:
            for _ in range(5):
                await c.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)

        await asyncio.gather(*(send(c) for c in senders))
    finally:
        for c in senders:
            await c.close()
    await listener.wait_for(1)
    await listener.settle()
    assert listener.received == [(CHANNEL, "")]
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_q") == 40
