"""One step in detail: its hand-offs over the last hour and its recent errors by type.

Hand-offs come from the step's archive (through its archived_at index, so the cost follows
the hour's traffic, not the archive's size): per minute, how many, and the p50/p95 of
enqueue-to-start (sent until its last attempt started: queueing and retry waits) and of
handler time (last attempt started until handed off, the hand-off's commit included).
Errors come from the messages still retrying in the step's queue (their last recorded error)
and from the step's dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from orchestrator.ops.queries import query
from orchestrator.state.applied import applied_pipeline

HOUR = 3600.0
BUCKET = 60


@dataclass(frozen=True)
class Bucket:
    """Hand-offs of one minute."""

    start: datetime
    handed_off: int
    wait_p50: float | None
    wait_p95: float | None
    run_p50: float | None
    run_p95: float | None


@dataclass(frozen=True)
class ErrorGroup:
    """Failures of one error type."""

    error_type: str
    failures: int
    last_message: str | None
    last_at: datetime | None


@dataclass(frozen=True)
class StepActivity:
    """A step's last hour, measured at `measured_at` (the database's clock)."""

    pipeline: str
    step: str
    queue: str
    measured_at: datetime
    since: datetime
    buckets: tuple[Bucket, ...]
    errors: tuple[ErrorGroup, ...]

    @property
    def handed_off(self) -> int:
        return sum(b.handed_off for b in self.buckets)


async def step_activity(
    conn: asyncpg.Connection, pipeline: str, step: str, *, window: float = HOUR
) -> StepActivity:
    """Hand-offs per minute and errors by type of `step` over the last `window` seconds."""
    applied = await applied_pipeline(conn, pipeline)
    queue = applied.queue_name(step)
    measured_at: datetime = await conn.fetchval(query("clock"))
    since = measured_at - timedelta(seconds=window)
    buckets = []
    if applied.archive_enabled:
        rows = await conn.fetch(query("step_activity"), queue, since, BUCKET)
        buckets = [Bucket(*r.values()) for r in rows]
    errors = await conn.fetch(query("step_errors"), queue, applied.dead_letter_queue, step, since)
    return StepActivity(
        pipeline=applied.name,
        step=step,
        queue=queue,
        measured_at=measured_at,
        since=since,
        buckets=tuple(buckets),
        errors=tuple(ErrorGroup(*r.values()) for r in errors),
    )
