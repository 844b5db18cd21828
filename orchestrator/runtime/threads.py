"""Plain ``def`` handlers run here: daemon threads, one per running call, reused when idle.

A Python thread cannot be killed. A call that passes its step's timeout is *abandoned*: its
attempt fails with HandlerTimeout at once, its thread keeps running, is counted in `abandoned`
until it returns, and holds no slot: the next call starts on another thread. The threads are
daemons, so a process whose messages are released can exit however many are still stuck.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

IDLE_SECONDS = 60.0
"""An idle thread ends after this long without work."""

_Job = tuple[Callable[[], Any], Future[Any]]


class Threads:
    """Runs blocking calls off the event loop; see the module docstring."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._started = 0
        self._abandoned: set[Future[Any]] = set()

    @property
    def abandoned(self) -> int:
        """Calls given up on (timed out) whose thread is still running."""
        with self._lock:
            return len(self._abandoned)

    async def run(self, call: Callable[[], Any]) -> Any:
        """The result of `call()` run in a thread. Cancelling the wait abandons the call."""
        future: Future[Any] = Future()
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._jobs.put((call, future))
        if spawn:
            self._spawn()
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.done():
                with self._lock:
                    self._abandoned.add(future)
                future.add_done_callback(self._returned)
            raise

    def _returned(self, future: Future[Any]) -> None:
        with self._lock:
            self._abandoned.discard(future)

    def _spawn(self) -> None:
        self._started += 1
        name = f"orchestrator-{self._name}-{self._started}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                call, future = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0 and self._jobs.empty():
                        self._idle -= 1
                        return
                continue
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:  # the handler's, delivered to the awaiting task
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1
