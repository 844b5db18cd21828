"""The LISTEN connection: insert notifications wake the right consumer, and a killed
connection comes back and wakes everyone (notifications sent meanwhile are lost)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orchestrator.errors import QueueError
from orchestrator.runtime.wakeup import WakeupListener, insert_channel
from tests.integration.process.support import wait_until


class Sleeper:
    """Stands in for a consumer: counts its wake-ups."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.wakes = 0
        self.woken = asyncio.Event()

    def wake(self) -> None:
        self.wakes += 1
        self.woken.set()

    def reset(self) -> None:
        self.wakes = 0
        self.woken.clear()


@pytest.fixture
async def queues(conn: asyncpg.Connection) -> list[str]:
    names = ["orders__import", "orders__label"]
    for name in names:
        await conn.execute("SELECT pgmq.create($1)", name)
        await conn.execute("SELECT pgmq.enable_notify_insert($1, 0)", name)
    return names


@pytest.fixture
async def running(
    dsn: str, queues: list[str]
) -> AsyncIterator[tuple[WakeupListener, dict[str, Sleeper]]]:
    sleepers = {q: Sleeper(q) for q in queues}
    listener = WakeupListener(dsn, sleepers.values())
    stopping = asyncio.Event()
    task = asyncio.create_task(listener.run(stopping))
    await asyncio.wait_for(listener.listening.wait(), 30)
    try:
        yield listener, sleepers
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)


async def test_an_insert_wakes_the_consumers_of_its_queue_only(
    conn: asyncpg.Connection, running: tuple[WakeupListener, dict[str, Sleeper]]
) -> None:
    listener, sleepers = running
    assert listener.channels == ("pgmq.q_orders__import.INSERT", "pgmq.q_orders__label.INSERT")
    importer, labeller = sleepers["orders__import"], sleepers["orders__label"]
    assert importer.wakes == 1 and labeller.wakes == 1  # woken once on connecting
    importer.reset()
    labeller.reset()

    await conn.execute("SELECT pgmq.send('orders__import', '{}'::jsonb)")
    await asyncio.wait_for(importer.woken.wait(), 10)
    # Notifications arrive in order on one connection: none for the other queue is pending.
    assert labeller.wakes == 0

    await conn.execute("SELECT pgmq.send('orders__label', '{}'::jsonb)")
    await asyncio.wait_for(labeller.woken.wait(), 10)


async def test_a_killed_connection_is_replaced_and_everyone_is_woken(
    conn: asyncpg.Connection, running: tuple[WakeupListener, dict[str, Sleeper]]
) -> None:
    listener, sleepers = running
    first_pid = listener.backend_pid
    for sleeper in sleepers.values():
        sleeper.reset()

    assert await conn.fetchval("SELECT pg_terminate_backend($1)", first_pid)

    async def reconnected() -> bool:
        return listener.connections == 2 and listener.listening.is_set()

    await wait_until(reconnected, 30, "the listener to reconnect")
    assert listener.backend_pid != first_pid
    assert all(s.wakes >= 1 for s in sleepers.values())  # woken after reconnecting

    importer = sleepers["orders__import"]
    importer.reset()
    await conn.execute("SELECT pgmq.send('orders__import', '{}'::jsonb)")
    await asyncio.wait_for(importer.woken.wait(), 10)


@pytest.mark.parametrize("name", ['x"; LISTEN y; --', "Orders Import", "", "a" * 48])
def test_names_that_cannot_be_queues_never_reach_listen(name: str) -> None:
    with pytest.raises(QueueError):
        insert_channel(name)
    with pytest.raises(QueueError):
        WakeupListener("postgresql://unused", [Sleeper(name)])
