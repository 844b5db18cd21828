"""The lease of a batch: its messages stay hidden while their handlers run.

The claim's FOR KEY SHARE lock keeps other readers off for as long as the batch transaction is
open; the vt is only the crash-recovery timer. Every half visibility timeout `Lease` moves it
forward from another pool connection (the lock lets that UPDATE through), so after a crash the
messages come back a visibility timeout after the last sign of life. When the extension fails,
or the batch's connection closes (`Watch`), `lost` says why and the running handler is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from orchestrator.runtime import handoff
from orchestrator.runtime.handoff import StepMessage
from orchestrator.runtime.timers import Deadline


class LeaseLost(Exception):
    """The batch's messages may belong to another worker now."""


class Lease:
    """Keeps a batch's messages leased while its handlers run (see the module docstring)."""

    def __init__(
        self,
        pool: Any,
        queue: str,
        vt_seconds: int,
        messages: Sequence[StepMessage],
        on_extended: Callable[[], None] | None = None,
    ) -> None:
        self._pool = pool
        self._queue = queue
        self._vt_seconds = vt_seconds
        self._messages = messages
        self._on_extended = on_extended
        self._loop = asyncio.get_running_loop()
        self._period = vt_seconds / 2
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(self._period, self._due)
        self.lost: str | None = None
        self.deadline: Deadline | None = None

    def check(self) -> None:
        """Raise LeaseLost when the lease was lost."""
        if self.lost is not None:
            raise LeaseLost(self.lost)

    def _due(self) -> None:
        self._handle = None
        if not self._stopped:
            self._task = asyncio.create_task(self._extend())

    async def _extend(self) -> None:
        try:
            async with self._pool.acquire(timeout=self._period) as conn:
                moved = await handoff.extend_lease(
                    conn, self._queue, self._messages, self._vt_seconds
                )
        except Exception as exc:
            self.lose(f"could not extend the lease ({type(exc).__name__}: {exc})")
            return
        if moved < len(self._messages):
            self.lose(
                f"lease lost: {len(self._messages) - moved} of {len(self._messages)} "
                "message(s) were taken by another worker"
            )
            return
        if self._on_extended is not None:
            self._on_extended()
        if not self._stopped:
            self._handle = self._loop.call_later(self._period, self._due)

    def lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
        if self.deadline is not None:
            self.deadline.expire_now()

    async def stop(self) -> None:
        """No more extensions; waits for one in progress (it must not outlive the batch)."""
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        task = self._task
        if task is not None and not task.done():
            done, _ = await asyncio.wait({task}, timeout=self._period)
            if not done:
                task.cancel()
                await asyncio.wait({task})


class Watch:
    """Connects a pool connection's termination to the lease of the batch running on it."""

    __slots__ = ("lease",)

    def __init__(self) -> None:
        self.lease: Lease | None = None

    def closed(self, _conn: object) -> None:
        if self.lease is not None:
            self.lease.lose("the database connection of the batch was closed")
