"""Wake-ups: one LISTEN connection per process turns insert notifications into consumer wakes.

The queue layer notifies ``pgmq.q_<queue>.INSERT`` when messages arrive (throttled per queue).
A process opens one dedicated connection (never a pooled one: a pool drops listeners on
release), LISTENs on the channel of every queue it consumes and calls ``wake()`` on the
consumers of that queue. Notifications are a latency optimisation only: consumers keep a slow
poll for delayed and expired messages, and every consumer is woken after each (re)connect
because notifications sent while the connection was down are lost.

LISTEN needs a session: through a transaction pooler the notifications would go to whichever
client holds the server connection at that moment. `listen_dsn` picks the DSN to listen on:
the `--listen-dsn` given (a direct connection, or a session pooler), else the workers' DSN
unless it goes through a transaction pooler; with neither, consumers poll every
`POLL_WITHOUT_LISTEN` seconds instead.

`wait_for_event` and `wait_for_any` are shared with the other dedicated connection of a
process (the upkeep leader).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import asyncpg

from orchestrator.db import connect, pool_mode
from orchestrator.errors import ConfigError
from orchestrator.queue.client import notify_channel
from orchestrator.runtime.retry import reconnect_delay

HEALTH_CHECK_INTERVAL = 30.0
"""Seconds between liveness probes of an idle LISTEN connection (catches half-open sockets)."""

HEALTH_CHECK_TIMEOUT = 10.0

POLL_WITHOUT_LISTEN = 0.25
"""Seconds between reads of an idle consumer that gets no wake-ups (transaction pooler)."""

LISTEN_DSN_ENV = "ORCHESTRATOR_LISTEN_DSN"

_log = logging.getLogger(__name__)


class Wakeable(Protocol):
    """What the listener needs of a consumer."""

    @property
    def queue(self) -> str: ...

    def wake(self) -> None: ...


Connect = Callable[[str], Awaitable[asyncpg.Connection]]


def insert_channel(queue: str) -> str:
    """The notification channel of `queue`; raises InvalidQueueName for a name that cannot be
    a queue (so no quote or other character needing escapes ever reaches LISTEN)."""
    return notify_channel(queue)


async def listen_dsn(dsn: str, listen: str | None) -> str | None:
    """The DSN the wake-up connection uses: `listen` when given, else `dsn` unless it goes
    through a transaction pooler; None when there is none (consumers poll instead). A
    `listen` DSN that itself goes through a transaction pooler is a ConfigError."""
    if listen:
        if not (await pool_mode(listen)).keeps_session:
            raise ConfigError(
                "--listen-dsn goes through a transaction pooler, where LISTEN misses "
                "notifications; point it at PostgreSQL itself (or a session-mode pool)"
            )
        return listen
    return dsn if (await pool_mode(dsn)).keeps_session else None


async def keep_connected(
    session: Callable[[asyncio.Event], Awaitable[None]],
    stopping: asyncio.Event,
    log: logging.Logger | logging.LoggerAdapter[Any],
    what: str,
) -> None:
    """Run `session` over and over until `stopping` is set; after a failure of its dedicated
    connection, log it and wait a backoff delay (capped exponential with jitter)."""
    failures = 0
    while not stopping.is_set():
        try:
            await session(stopping)
            failures = 0
        except Exception as exc:  # any failure of the link: log, back off, reconnect
            failures += 1
            delay = reconnect_delay(failures)
            log.warning(
                "%s connection down (%s: %s); reconnecting in %.1fs",
                what,
                type(exc).__name__,
                exc,
                delay,
            )
            await wait_for_event(stopping, delay)


async def wait_for_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` passes; True when it was set."""
    if event.is_set():
        return True
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


async def wait_for_any(events: Iterable[asyncio.Event], timeout: float | None) -> None:
    """Return when one of `events` is set or `timeout` passes."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class WakeupListener:
    """Keeps one LISTEN connection open and fans notifications out to consumers."""

    def __init__(
        self,
        dsn: str,
        consumers: Iterable[Wakeable],
        *,
        connector: Connect | None = None,
        health_interval: float = HEALTH_CHECK_INTERVAL,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        on_listening: Callable[[], None] | None = None,
    ) -> None:
        self._dsn = dsn
        self._connect = connector or connect
        self._on_listening = on_listening or self.wake_all
        """What to do once the LISTENs are in place, since notifications sent before were not
        heard: wake every consumer, unless the worker asks its visibility clock which queues
        hold visible messages (one statement, and only those consumers read)."""
        self._health_interval = health_interval
        self._log = logger or _log
        self._by_channel: dict[str, list[Wakeable]] = {}
        self._callbacks: dict[str, Callable[[str], None]] = {}
        for consumer in consumers:
            self._by_channel.setdefault(insert_channel(consumer.queue), []).append(consumer)
        self.listening = asyncio.Event()
        """Set while the LISTENs are in place (for readiness checks and tests)."""
        self.connections = 0
        """How many times a LISTEN connection was established."""
        self.backend_pid: int | None = None
        """Server process of the current LISTEN connection."""

    @property
    def channels(self) -> tuple[str, ...]:
        return (*self._by_channel, *self._callbacks)

    def also_listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Before `run`: call `callback(payload)` for each notification on `channel` (a fixed
        name of ours, such as the flow-control channel; never user input)."""
        self._callbacks[channel] = callback

    async def run(self, stopping: asyncio.Event) -> None:
        """Listen until `stopping` is set, reconnecting with backoff whenever the link drops."""
        if not self.channels:
            return
        await keep_connected(self._session, stopping, self._log, "wake-up")

    async def _session(self, stopping: asyncio.Event) -> None:
        conn = await self._connect(self._dsn)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        self.backend_pid = conn.get_server_pid()
        try:
            for channel in self.channels:
                # add_listener issues LISTEN with the channel quoted as an identifier; the
                # name was validated by insert_channel, so it holds no quote to escape.
                await conn.add_listener(channel, self._notified)
            self.connections += 1
            self.listening.set()
            if self.connections > 1:
                self._log.info("wake-up connection re-established")
            self._on_listening()  # anything sent while we were not listening
            await self._watch(conn, lost, stopping)
        finally:
            self.listening.clear()
            await close_quietly(conn)

    async def _watch(
        self, conn: asyncpg.Connection, lost: asyncio.Event, stopping: asyncio.Event
    ) -> None:
        while not stopping.is_set():
            await wait_for_any((stopping, lost), self._health_interval)
            if lost.is_set():
                raise ConnectionError("the server closed the connection")
            if not stopping.is_set():
                await asyncio.wait_for(conn.fetchval("SELECT 1"), HEALTH_CHECK_TIMEOUT)

    def _notified(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        for consumer in self._by_channel.get(channel, ()):
            consumer.wake()
        callback = self._callbacks.get(channel)
        if callback is not None:
            callback(payload)

    def wake_all(self) -> None:
        """Wake every consumer, and call every callback with an empty payload (after a
        reconnect, notifications may have been missed)."""
        for consumers in self._by_channel.values():
            for consumer in consumers:
                consumer.wake()
        for callback in self._callbacks.values():
            callback("")


async def close_quietly(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 5)
    except Exception:  # the server may already be gone; the socket is dropped either way
        conn.terminate()
