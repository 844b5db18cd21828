"""When a worker's queues next hold a visible message: one statement per worker, not per step.

Notifications wake consumers when messages are inserted, but some messages become visible later
without any: a delayed send, a retry's backoff, the lease of a worker that died. Rather than
every consumer polling its queue, the worker's `VisibilityClock` asks once, for all the queues
it consumes, when each next holds a visible message (``orchestrator.next_visible``), and tells
each consumer (`Scheduled.visible_in`), which then sleeps exactly until that moment.

The clock asks

- when a consumer's read came back empty (`request`): what it was woken for may be delayed, or
  a retry it just scheduled may come due; requests are served at most once per `MIN_GAP`;
- every `interval` seconds otherwise: the safety poll, which also catches messages of a queue
  another worker read and then lost.

A failed statement (the database is restarting, the pool is exhausted) is tried again after a
capped exponential backoff, and requests wait for it: consumers keep the moments they were
told, and when the wake-up listener's connection comes back it asks the clock (`request`), which
wakes the consumers whose queues hold visible messages. (A queue dropped by hand fails the
statement too: then every consumer reads at once, and the one whose queue is gone stops its
worker.) An idle worker therefore sends one statement per `interval`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from orchestrator.db.named_sql import named_queries
from orchestrator.runtime.pgconn import is_missing_queue
from orchestrator.runtime.retry import reconnect_delay
from orchestrator.runtime.wakeup import wait_for_any, wait_for_event

MIN_GAP = 0.2
"""Seconds between two statements of a clock serving requests (a busy worker's empty reads)."""

QUERY_TIMEOUT = 30.0

_NEXT_VISIBLE = named_queries("orchestrator.runtime")["next_visible"]

_log = logging.getLogger(__name__)


class Scheduled(Protocol):
    """What the clock needs of a consumer."""

    @property
    def queue(self) -> str: ...

    def visible_in(self, seconds: float | None) -> None: ...


class Fetcher(Protocol):
    async def fetch(
        self, query: str, *args: Any, timeout: float | None = None
    ) -> Sequence[Any]: ...


class VisibilityClock:
    """Tells a worker's consumers when their queues next hold a visible message."""

    def __init__(self, pool: Fetcher, consumers: Iterable[Scheduled], interval: float) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self._pool = pool
        self.interval = interval
        self._by_queue: dict[str, list[Scheduled]] = {}
        for consumer in consumers:
            self._by_queue.setdefault(consumer.queue, []).append(consumer)
        self._requested = asyncio.Event()
        self.asked = 0
        """Statements sent so far (for tests and benchmarks)."""

    def request(self) -> None:
        """A consumer found its queue empty: ask again soon (at most once per MIN_GAP)."""
        self._requested.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Ask at start, on requests and every `interval` seconds, until `stopping` is set."""
        if not self._by_queue:
            return
        failures = 0
        while not stopping.is_set():
            self._requested.clear()
            if await self._ask():
                failures = 0
                await wait_for_event(stopping, MIN_GAP)
            else:  # requests wait out the backoff: a failing clock never drives reads
                failures += 1
                await wait_for_event(stopping, max(MIN_GAP, reconnect_delay(failures)))
            if not self._requested.is_set():
                await wait_for_any((self._requested, stopping), self.interval)

    async def _ask(self) -> bool:
        """Ask once and tell the consumers; False when the statement failed."""
        self.asked += 1
        try:
            rows = await self._pool.fetch(
                _NEXT_VISIBLE, list(self._by_queue), timeout=QUERY_TIMEOUT
            )
        except Exception as exc:  # the database is away: the consumers' reads find out
            _log.debug("next-visible check failed (%s: %s)", type(exc).__name__, exc)
            if is_missing_queue(exc):  # a queue was dropped: every consumer reads now, and
                for consumers in self._by_queue.values():  # the one whose queue is gone
                    for consumer in consumers:  # stops its worker (exit 4)
                        consumer.visible_in(0)
            return False
        for queue, seconds in rows:
            for consumer in self._by_queue.get(queue, ()):
                consumer.visible_in(seconds)
        return True
