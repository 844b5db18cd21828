"""Live updates: server-sent events fed by LISTEN/NOTIFY and a periodic query.

One `Hub` per dashboard computes a fragment of HTML (the overview's pipelines) and pushes it to
every open event stream when it changes. It recomputes when a queue's insert notification
arrives (one dedicated LISTEN connection on the channels of every applied queue) and at least
every `PERIOD` seconds, since hand-offs, retries and dead letters change counts without an
insert notification. The hub runs while someone listens and stops when the last stream closes,
so an idle dashboard holds no connection. Browsers get the fragment once per change, not per
poll: the page never polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from orchestrator.db import connect

_log = logging.getLogger(__name__)

PERIOD = 1.0
"""Seconds between two recomputations when no notification arrives."""

KEEPALIVE = 15.0
"""Seconds between two comment lines on an idle stream (keeps proxies from closing it)."""


class Hub:
    """Recomputes one fragment and fans it out to the open streams."""

    def __init__(
        self,
        dsn: str,
        compute: Callable[[], Awaitable[str]],
        channels: Callable[[], Awaitable[list[str]]],
        *,
        period: float = PERIOD,
    ) -> None:
        self._dsn = dsn
        self._compute = compute
        self._channels = channels
        self._period = period
        self._changed = asyncio.Condition()
        self._nudge = asyncio.Event()
        self._listeners = 0
        self._task: asyncio.Task[None] | None = None
        self.version = 0
        self.fragment = ""

    async def stream(self) -> AsyncIterator[str]:
        """Fragments as they change, the current one first."""
        self._listeners += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dashboard hub")
        seen = -1
        try:
            while True:
                async with self._changed:
                    if self.version == seen:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._changed.wait(), KEEPALIVE)
                if self.version == seen:
                    yield ""  # keep-alive
                    continue
                seen = self.version
                yield self.fragment
        finally:
            self._listeners -= 1

    async def _run(self) -> None:
        listener: asyncpg.Connection | None = None
        try:
            listener = await self._listen()
            while self._listeners > 0:
                await self._refresh()
                self._nudge.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._nudge.wait(), self._period)
        except Exception:
            _log.exception("live updates stopped")
        finally:
            if listener is not None:
                await listener.close()

    async def _listen(self) -> asyncpg.Connection | None:
        """A dedicated connection listening on every queue's insert channel (None when the
        database refuses: the periodic query still runs)."""
        try:
            conn = await connect(self._dsn)
            for channel in await self._channels():
                await conn.add_listener(channel, self._on_notify)
            return conn
        except Exception as exc:
            _log.warning("no LISTEN connection (%s); updating every %gs", exc, self._period)
            return None

    def _on_notify(self, *_args: object) -> None:
        self._nudge.set()

    async def _refresh(self) -> None:
        try:
            fragment = await self._compute()
        except Exception as exc:
            _log.warning("live update failed: %s", exc)
            return
        if fragment != self.fragment:
            async with self._changed:
                self.fragment = fragment
                self.version += 1
                self._changed.notify_all()


def event(name: str, html: str) -> str:
    """One server-sent event carrying `html` (each line its own `data:` line)."""
    if not html:
        return ": keep-alive\n\n"
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {name}\n{lines}\n"
