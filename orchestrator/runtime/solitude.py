"""`Solitude`: one per worker process; batches share it, a suspect runs alone in the process.

A SIGKILL, a segfault or the OOM killer ends the whole process, so every message in flight in
it loses its attempt, whichever handler ended it. Running a suspect alone in its batch protects
its batch-mates, but only running it alone in the *process* proves that, if the process dies
while it runs, its own handler ended it: that is the proof the read cap needs before it
dead-letters a message as WorkerLost (`bookkeeping.proven_lost`).

So each batch's handler phase holds the gate shared, and a suspect's run (its ``isolated`` mark
included) holds it alone when it can. A suspect within its attempts takes the gate alone only
if it is free at once (an idle process: the proof comes for free); otherwise it runs in a batch
of one beside the others, unmarked. A suspect read more than ``max_attempts`` times waits for
the gate alone (its lease extended meanwhile, so its read does not lapse): waiting stops new
batches of the process from starting (writer preference) and lasts until the batches already
running finish. Only messages lost again and again wait, so a crash costs the others no
throughput. Messages read ahead by other loops while a suspect runs alone are held, not run:
if the suspect ends the process they lose one attempt, unmarked, so the cap never counts it
against them.

Not covered: a ``def`` handler abandoned after its timeout keeps running in its thread; if such
a thread later ends the process while a suspect runs alone, the suspect is blamed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Solitude:
    """A shared/alone gate for the batches of one worker process (one event loop)."""

    def __init__(self) -> None:
        self._sharing = 0
        self._alone = False
        self._waiting_alone = 0
        self._changed = asyncio.Condition()

    @property
    def sharing(self) -> int:
        """Batches holding the gate shared now."""
        return self._sharing

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        """Hold the gate for one batch; waits while a suspect runs or waits to run alone."""
        if self._alone or self._waiting_alone:
            async with self._changed:
                await self._changed.wait_for(lambda: not (self._alone or self._waiting_alone))
        self._sharing += 1
        try:
            yield
        finally:
            self._sharing -= 1
            if self._sharing == 0 and self._waiting_alone:
                async with self._changed:
                    self._changed.notify_all()

    @asynccontextmanager
    async def alone(self, *, wait: bool) -> AsyncIterator[bool]:
        """Hold the gate alone (yields True): no other batch of this process runs until it is
        let go. With `wait` False and the gate busy, hold it shared instead (yields False)."""
        if not (self._alone or self._sharing or self._waiting_alone):
            self._alone = True  # free: taken at once (no await in between)
        elif not wait:
            async with self.shared():
                yield False
            return
        else:
            await self._wait_alone()
        try:
            yield True
        finally:
            async with self._changed:
                self._alone = False
                self._changed.notify_all()

    async def _wait_alone(self) -> None:
        async with self._changed:
            self._waiting_alone += 1
            try:
                await self._changed.wait_for(lambda: not (self._alone or self._sharing))
            except BaseException:
                self._changed.notify_all()  # batches held back for this waiter go on
                raise
            finally:
                self._waiting_alone -= 1
            self._alone = True
