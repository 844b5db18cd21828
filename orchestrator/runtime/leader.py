"""Upkeep done by one process per database: maintenance and schedules.

Every worker process runs a `Leader`, but an upkeep job only runs in the process holding its
lock: a session-level advisory lock taken with ``pg_try_advisory_lock`` on a dedicated
connection. Database-wide maintenance (partitions, archive retention, joins) has one key; the
schedules of a pipeline have a key per pipeline, so a pipeline's ticks are fired by a process
that runs that pipeline even when different hosts run different pipelines.

Jobs run on the lock's own connection: if that connection dies, its locks are gone at the
same moment, so two processes never run the same job at once. After a reconnect the locks
are claimed again (another process may have taken them meanwhile); processes without a lock
retry every few seconds and take over when the holder goes away.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from orchestrator.db import connect
from orchestrator.db.named_sql import named_queries
from orchestrator.ops.maintain import maintain_all
from orchestrator.ops.schedules import fire_due
from orchestrator.runtime.pgconn import SESSION_SETTINGS
from orchestrator.runtime.wakeup import (
    Connect,
    close_quietly,
    keep_connected,
    wait_for_any,
)
from orchestrator.spec import Pipeline

_log = logging.getLogger(__name__)


async def _connect_pinned(dsn: str) -> asyncpg.Connection:
    """The upkeep connection: its transactions (schedules, maintenance) are READ COMMITTED."""
    return await connect(dsn, server_settings=SESSION_SETTINGS)


DATABASE_LOCK = int.from_bytes(b"orchlead", "big", signed=True)
"""Advisory lock key of database-wide upkeep (the bytes of "orchlead" as a bigint)."""

CLAIM_INTERVAL = 5.0
"""Seconds between attempts to take locks held by another process."""

MAINTENANCE_INTERVAL = 60.0
SCHEDULE_INTERVAL = 1.0

_CLAIM = named_queries("orchestrator.runtime")["try_upkeep_locks"]


def lock_key(scope: str) -> int:
    """A stable advisory lock key (bigint) for an upkeep scope such as ``schedules reports``."""
    digest = hashlib.sha256(f"orchestrator upkeep {scope}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class UpkeepJob:
    """A periodic job that runs only in the process holding `lock`."""

    name: str
    interval: float
    run: Callable[[asyncpg.Connection], Awaitable[object]]
    lock: int = DATABASE_LOCK
    timeout: float = 300.0


class Leader:
    """Claims upkeep locks on a dedicated connection and runs the jobs whose lock it holds."""

    def __init__(
        self,
        dsn: str,
        jobs: Sequence[UpkeepJob],
        *,
        connector: Connect | None = None,
        claim_interval: float = CLAIM_INTERVAL,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self._dsn = dsn
        self._jobs = tuple(jobs)
        self._connect = connector or _connect_pinned
        self._claim_interval = claim_interval
        self._log = logger or _log
        self._held: set[int] = set()
        self.runs: dict[str, int] = {job.name: 0 for job in self._jobs}
        """Completed runs per job name (for tests and status)."""
        self.backend_pid: int | None = None
        """Server process of the connection holding the locks."""

    @property
    def held(self) -> frozenset[int]:
        """Lock keys this process holds right now."""
        return frozenset(self._held)

    @property
    def _wanted(self) -> set[int]:
        return {job.lock for job in self._jobs}

    async def run(self, stopping: asyncio.Event) -> None:
        """Hold locks and run jobs until `stopping` is set, reconnecting with backoff."""
        if not self._jobs:
            return
        # When the connection fails its session locks are gone with it: start over.
        await keep_connected(self._session, stopping, self._log, "upkeep")

    async def _session(self, stopping: asyncio.Event) -> None:
        conn = await self._connect(self._dsn)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        self.backend_pid = conn.get_server_pid()
        due = {job.name: 0.0 for job in self._jobs}
        next_claim = 0.0
        try:
            while not stopping.is_set():
                if time.monotonic() >= next_claim and self._wanted - self._held:
                    await self._claim(conn)
                    next_claim = time.monotonic() + self._claim_interval
                for job in self._jobs:
                    if job.lock in self._held and time.monotonic() >= due[job.name]:
                        await self._run_job(conn, job)
                        due[job.name] = time.monotonic() + job.interval
                await wait_for_any((stopping, lost), self._sleep(due, next_claim))
                if lost.is_set():
                    raise ConnectionError("the server closed the connection")
        finally:
            self._held.clear()
            await close_quietly(conn)

    def _sleep(self, due: dict[str, float], next_claim: float) -> float:
        moments = [due[job.name] for job in self._jobs if job.lock in self._held]
        if self._wanted - self._held:
            moments.append(next_claim)
        return max(0.0, min(moments) - time.monotonic()) if moments else self._claim_interval

    async def _claim(self, conn: asyncpg.Connection) -> None:
        wanted = sorted(self._wanted - self._held)
        taken = {int(r["k"]) for r in await conn.fetch(_CLAIM, wanted)}
        if taken:
            self._held |= taken
            names = ", ".join(job.name for job in self._jobs if job.lock in taken)
            self._log.info("this process now runs upkeep: %s", names)

    async def _run_job(self, conn: asyncpg.Connection, job: UpkeepJob) -> None:
        try:
            await asyncio.wait_for(job.run(conn), job.timeout)
        except Exception as exc:
            if conn.is_closed() or isinstance(exc, OSError | TimeoutError):
                raise  # the connection is gone or in doubt: reconnect (and re-claim)
            self._log.warning("upkeep job %r failed: %s: %s", job.name, type(exc).__name__, exc)
            return
        self.runs[job.name] += 1


def upkeep_jobs(pipelines: Iterable[Pipeline], *, schedules: bool = True) -> list[UpkeepJob]:
    """The standard jobs: maintenance (partitions, archive retention, join cleanup) once per
    database, and each pipeline's schedules (unless `schedules` is false, as when draining)."""
    jobs = [UpkeepJob("maintenance", MAINTENANCE_INTERVAL, maintain_all)]
    if schedules:
        jobs += [_schedule_job(p, fire_due) for p in pipelines if p.schedules]
    return jobs


def _schedule_job(pipeline: Pipeline, fire_due: Callable[..., Awaitable[object]]) -> UpkeepJob:
    async def fire(conn: asyncpg.Connection) -> object:
        return await fire_due(conn, [pipeline])

    return UpkeepJob(
        f"schedules of {pipeline.name}",
        SCHEDULE_INTERVAL,
        fire,
        lock=lock_key(f"schedules {pipeline.name}"),
        timeout=60.0,
    )
