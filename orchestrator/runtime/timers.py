"""The consumer's clocks: the doorbell idle loops wait on, and a handler's deadline."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class Doorbell:
    """Wakes idle loops: `ring` resolves every waiter; a ring since `seen` is never missed.
    `nudge` resolves them too without counting a ring: their timeout changed."""

    __slots__ = ("_waiters", "nudges", "rings")

    def __init__(self) -> None:
        self.rings = 0
        self.nudges = 0
        self._waiters: list[asyncio.Future[None]] = []

    def ring(self) -> None:
        self.rings += 1
        self._resolve_all()

    def nudge(self) -> None:
        self.nudges += 1
        self._resolve_all()

    def _resolve_all(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, seen: int, timeout: float) -> None:
        """Return at the first ring after `seen` rings (at once if there was one), or after
        `timeout` seconds."""
        if self.rings != seen:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if waiter in self._waiters:  # woken by its timer: not rung, still listed
                self._waiters.remove(waiter)

    @property
    def waiting(self) -> int:
        """Loops waiting right now."""
        return len(self._waiters)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Deadline:
    """Cancels the task running a batch's handlers when the current call's timeout passes,
    or at once when told (`expire_now`).

    One per batch, armed around each handler call (`arm`, `disarm`) and closed when the batch
    is done. Calls that return in time share one timer: when it fires before the current
    call's end it is set again for that end, so a batch of 100 fast handlers schedules one
    timer instead of 100 (each costs a heap push and a cancellation). The caller disarms it
    as soon as the handler returns, before its next await, and checks `expired` to tell its
    own cancellation from someone else's.
    """

    __slots__ = ("_due", "_handle", "_loop", "expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._due: float | None = None
        self.expired = False

    def arm(self, seconds: float) -> None:
        """The handler call starting now must end within `seconds`."""
        self.expired = False
        self._due = due = self._loop.time() + seconds
        handle = self._handle
        if handle is None or handle.when() > due:
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(due, self._fire)

    def disarm(self) -> None:
        """The call returned: nothing to cancel (the timer stays for the next call)."""
        self._due = None

    def close(self) -> None:
        """The batch is done: no timer left behind."""
        self._due = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        due = self._due
        if due is None or self.expired:
            return
        if due - self._loop.time() > _EARLY:  # set for an earlier call: wait for this one
            self._handle = self._loop.call_at(due, self._fire)
            return
        self.expired = True
        self.task.cancel()

    def expire_now(self) -> None:
        if self._due is not None and not self.expired:
            self.expired = True
            self.task.cancel()


_EARLY = 0.001
"""Seconds before its end at which a call counts as timed out (the loop may run a timer a
clock tick early)."""


async def wait(event: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `event` is set meanwhile."""
    if event.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)
