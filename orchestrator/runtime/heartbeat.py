"""A worker's heartbeat: one row of `orchestrator.workers`, refreshed every few seconds.

The row says which host and process runs which step queues, since when, and when it last
showed a sign of life; the dashboard's workers page lists the rows younger than
`ops.workers.ALIVE`. A stopping worker deletes its row; the row of a killed one stops being
refreshed and is deleted by the next heartbeat of any worker after `FORGET` seconds. A failed
heartbeat (the database restarting) is logged and tried again at the next beat: it never stops
the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Sequence

import asyncpg

from orchestrator.db.named_sql import named_queries
from orchestrator.runtime.pgconn import is_connection_error
from orchestrator.runtime.wakeup import wait_for_event

_log = logging.getLogger(__name__)

INTERVAL = 10.0
"""Seconds between two heartbeats."""

FORGET = 300.0
"""Seconds after which the row of a silent worker is deleted."""


class Heartbeat:
    """Writes this process's row every `interval` seconds until `stopping` is set."""

    def __init__(
        self, pool: asyncpg.Pool, steps: Sequence[str], *, interval: float = INTERVAL
    ) -> None:
        self.id = str(uuid.uuid4())
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.steps = list(steps)
        self.interval = interval
        self._pool = pool

    async def run(self, stopping: asyncio.Event) -> None:
        try:
            while not stopping.is_set():
                await self._beat()
                await wait_for_event(stopping, self.interval)
        finally:
            await asyncio.shield(self._stop())

    async def _beat(self) -> None:
        try:
            await self._pool.execute(
                named_queries("orchestrator.runtime")["heartbeat"],
                self.id,
                self.host,
                self.pid,
                self.steps,
                FORGET,
                timeout=10,
            )
        except Exception as exc:
            # Whatever the connection did (a backend terminated between the pool's hand-out
            # and the query leaves asyncpg's protocol mid-error: InternalClientError, or an
            # InterfaceError), the row is refreshed at the next beat: never stop the worker.
            level = logging.DEBUG if _gone(exc) else logging.WARNING
            _log.log(level, "heartbeat failed (%s: %s); trying again", type(exc).__name__, exc)

    async def _stop(self) -> None:
        # A failure leaves the row to age out.
        with contextlib.suppress(Exception):
            await self._pool.execute(
                named_queries("orchestrator.runtime")["heartbeat_stop"], self.id, timeout=5
            )


def _gone(exc: BaseException) -> bool:
    """Whether `exc` says the database or the connection went away (the usual failure)."""
    return is_connection_error(exc) or isinstance(exc, asyncpg.PostgresError)
