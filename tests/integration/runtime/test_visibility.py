"""The worker's VisibilityClock: idle consumers send nothing, and messages that become visible
without a notification (a delayed start, a retry's backoff) still start on time.

The consumers here poll only every 60 s, as a worker's do (they rely on the clock), and the
clock's own safety poll is 60 s too: a message that starts within the tests' bounds was
started by the moment the clock announced, not by a poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from orchestrator.db import create_pool
from orchestrator.runtime import Retry, StepContext, start
from orchestrator.runtime.consumer import StepConsumer
from orchestrator.runtime.pgconn import PoolConnection, reset_if_lent
from orchestrator.runtime.visibility import VisibilityClock
from orchestrator.runtime.wakeup import WakeupListener
from tests.integration.runtime.conftest import Runtime

PIPE = """
pipeline: vis
queues: {notify: {throttle: 10ms}}
defaults: {visibility_timeout: 60s, timeout: 30s}
steps:
  first: {handler: t:first, next: second}
  second: {handler: t:second}
"""

SLOW_POLL = 60.0


class Counted:
    """A worker-like pool (no reset unless lent) whose statements are all recorded."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    async def init(self, conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda record: self.statements.append(record.query))


@pytest.fixture
async def counted(rt: Runtime) -> AsyncIterator[tuple[asyncpg.Pool, Counted]]:
    log = Counted()
    pool = await create_pool(
        rt.dsn,
        min_size=0,
        max_size=8,
        init=log.init,
        connection_class=PoolConnection,
        reset=reset_if_lent,
    )
    try:
        yield pool, log
    finally:
        await pool.close()


async def _run(
    rt: Runtime, pool: asyncpg.Pool, consumers: list[StepConsumer], body: Any
) -> VisibilityClock:
    """Run `consumers` with a clock and a LISTEN connection, wired as a worker wires them, while
    `body(clock, listener)` runs."""
    clock = VisibilityClock(pool, consumers, SLOW_POLL)
    for consumer in consumers:
        consumer.on_empty = clock.request
    listener = WakeupListener(rt.dsn, consumers, on_listening=clock.request)  # as a worker's
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(c.run(stopping)) for c in consumers]
    tasks += [
        asyncio.create_task(clock.run(stopping)),
        asyncio.create_task(listener.run(stopping)),
    ]
    try:
        async with asyncio.timeout(40):
            await listener.listening.wait()
            await body(clock, listener)
    finally:
        stopping.set()
        await asyncio.gather(*tasks)
    return clock


async def test_an_idle_worker_sends_nothing_but_its_clock(
    rt: Runtime, counted: tuple[asyncpg.Pool, Counted]
) -> None:
    pool, log = counted
    await rt.apply(PIPE)
    consumers = [
        rt.consumer("vis", step, _never, pool=pool, poll_interval=SLOW_POLL)
        for step in ("first", "second")
    ]

    async def idle(*_: object) -> None:
        await asyncio.sleep(1.5)  # the first reads, the clock's first answers, LINGER
        settled = len(log.statements)
        await asyncio.sleep(3)
        assert log.statements[settled:] == []

    clock = await _run(rt, pool, consumers, idle)
    assert log.statements, "the consumers read at start"
    assert 1 <= clock.asked <= 3
    # Taking a connection back costs no reset: no handler ever had one.
    assert not [s for s in log.statements if "pg_advisory_unlock_all" in s]


async def test_a_delayed_start_runs_when_due_without_a_poll(
    rt: Runtime, counted: tuple[asyncpg.Pool, Counted]
) -> None:
    pool, _ = counted
    await rt.apply(PIPE)
    started: list[float] = []

    async def first(payload: dict[str, Any], ctx: StepContext) -> None:
        started.append(time.monotonic())

    consumers = [rt.consumer("vis", "first", first, pool=pool, poll_interval=SLOW_POLL)]

    async def delayed(*_: object) -> None:
        await asyncio.sleep(1)  # idle: the clock knows of no message
        sent = time.monotonic()
        await start("vis", {}, conn=rt.conn, delay=2)  # notified now, visible in 2 s
        while not started:
            await asyncio.sleep(0.05)
        waited = started[0] - sent
        assert 1.5 <= waited < SLOW_POLL / 2, waited

    await _run(rt, pool, consumers, delayed)


async def test_a_retry_runs_after_its_backoff_without_a_notification(
    rt: Runtime, counted: tuple[asyncpg.Pool, Counted]
) -> None:
    pool, _ = counted
    await rt.apply(PIPE)
    attempts: list[float] = []

    async def first(payload: dict[str, Any], ctx: StepContext) -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise Retry(after=2)

    consumers = [rt.consumer("vis", "first", first, pool=pool, poll_interval=SLOW_POLL)]

    async def retried(*_: object) -> None:
        await start("vis", {}, conn=rt.conn)
        while len(attempts) < 2:
            await asyncio.sleep(0.05)
        gap = attempts[1] - attempts[0]
        assert 1.5 <= gap < SLOW_POLL / 2, gap

    await _run(rt, pool, consumers, retried)
    assert await rt.count("vis__second") == 1


async def test_a_handler_s_connection_is_reset_when_taken_back(
    rt: Runtime, counted: tuple[asyncpg.Pool, Counted]
) -> None:
    pool, log = counted
    await rt.apply(PIPE)
    done = asyncio.Event()

    async def first(payload: dict[str, Any], ctx: StepContext) -> None:
        await ctx.conn.execute("SELECT set_config('application_name', 'left behind', false)")
        done.set()

    consumers = [rt.consumer("vis", "first", first, pool=pool, poll_interval=SLOW_POLL)]

    async def run_one(*_: object) -> None:
        await start("vis", {}, conn=rt.conn)
        await done.wait()

    await _run(rt, pool, consumers, run_one)
    assert [s for s in log.statements if "pg_advisory_unlock_all" in s]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW application_name") != "left behind"


async def _never(payload: dict[str, Any], ctx: StepContext) -> None:
    raise AssertionError("no message was sent")


@pytest.mark.parametrize("give_back", ["release", "unread"])
async def test_messages_given_back_are_announced(rt: Runtime, give_back: str) -> None:
    """A message made visible by an update gets the notification an insert would have sent,
    so idle workers read it now rather than at their next safety poll."""
    await rt.apply(PIPE)
    await start("vis", {}, conn=rt.conn)
    msg_id, read_ct = await rt.conn.fetchrow(
        "SELECT msg_id, read_ct FROM pgmq.read('vis__first', 60, 1)"
    )
    heard: asyncio.Queue[str] = asyncio.Queue()
    await rt.aside.add_listener("pgmq.q_vis__first.INSERT", lambda *a: heard.put_nowait(a[2]))
    moved = await rt.conn.fetchval(
        f"SELECT orchestrator.{give_back}('vis__first', $1, $2)", [msg_id], [read_ct]
    )
    assert moved == 1
    assert await asyncio.wait_for(heard.get(), 10) == "pgmq.q_vis__first.INSERT"
    # A give-back that moved nothing announces nothing.
    await rt.conn.fetchval(
        f"SELECT orchestrator.{give_back}('vis__first', $1, $2)", [msg_id], [read_ct + 5]
    )
    await rt.conn.fetchval("SELECT 1")
    await asyncio.sleep(0.5)
    assert heard.empty()


async def test_a_reconnected_listener_asks_the_clock_instead_of_waking_every_consumer(
    rt: Runtime, counted: tuple[asyncpg.Pool, Counted]
) -> None:
    pool, log = counted
    await rt.apply(PIPE)
    handled: list[dict[str, Any]] = []

    async def first(payload: dict[str, Any], ctx: StepContext) -> None:
        handled.append(payload)

    consumers = [
        rt.consumer("vis", step, first, pool=pool, poll_interval=SLOW_POLL)
        for step in ("first", "second")
    ]

    def reads() -> int:
        return sum("pgmq.read" in s for s in log.statements)

    async def reconnect(clock: VisibilityClock, listener: WakeupListener) -> None:
        while reads() < len(consumers) or clock.asked < 1:  # each consumer's first read
            await asyncio.sleep(0.05)
        asked, seen = clock.asked, len(log.statements)
        assert await rt.conn.fetchval("SELECT pg_terminate_backend($1)", listener.backend_pid)
        while listener.connections < 2 or not listener.listening.is_set():
            await asyncio.sleep(0.05)
        while not any("next_visible" in s for s in log.statements[seen:]):
            await asyncio.sleep(0.05)  # the reconnect asks the clock ...
        assert clock.asked > asked
        await asyncio.sleep(0.3)  # what the answer rings would read now
        assert not any("pgmq.read" in s for s in log.statements[seen:])  # ... none rang
        await start("vis", {"n": 1}, conn=rt.conn)  # notifications are heard again
        while not handled:
            await asyncio.sleep(0.05)

    await _run(rt, pool, consumers, reconnect)
    assert handled[0] == {"n": 1}
