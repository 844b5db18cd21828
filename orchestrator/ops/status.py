"""`orchestrator status`: what every step of every applied pipeline holds and does right now.

One row per step answers the usual questions at once: is work piling up (waiting, visible,
oldest age), is it being worked on (in flight), is it failing (retrying, failures in the
window, dead letters), is it moving (handed off in the window), and is the table healthy
(size, share of dead tuples that vacuum has not reclaimed yet).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from orchestrator.ops.flow import StepFlow, cancelled_counts, collect_flow
from orchestrator.ops.horizon import HorizonHolder, horizon_holders
from orchestrator.ops.queries import query
from orchestrator.ops.schedules import NextTick, next_ticks
from orchestrator.state import AppliedPipeline, applied_pipelines

WINDOW = 60.0
"""Seconds of recent activity counted as 'handed off' and 'failures'."""

DEAD_TUPLE_ALERT = 0.2
"""A dead-tuple share above this needs attention (vacuum is falling behind)."""

DEAD_TUPLE_MIN = 50
"""Fewer dead tuples than this say nothing (PostgreSQL's autovacuum_vacuum_threshold): after
one message a queue table holds one dead tuple and no live one, a share of 100%."""


def _dead_share(live: int, dead: int) -> float | None:
    """dead / (live + dead), None before statistics exist."""
    total = live + dead
    return dead / total if total else None


@dataclass(frozen=True)
class TableNumbers:
    """Size and tuples of a queue's table (a dead-letter queue: its messages are counted per
    step by `orchestrator.ops_dead_letter_counts`)."""

    table_bytes: int
    live_tuples: int
    dead_tuples: int

    @property
    def dead_tuple_share(self) -> float | None:
        """n_dead_tup / (n_live_tup + n_dead_tup), None before statistics exist."""
        return _dead_share(self.live_tuples, self.dead_tuples)


@dataclass(frozen=True)
class QueueNumbers:
    """Counts and sizes of one queue, as `orchestrator.ops_queue_stats` measures them."""

    waiting: int
    visible: int
    in_flight: int
    retrying: int
    delayed: int
    oldest_age: float | None
    failures: int
    handed_off: int
    table_bytes: int
    archive_bytes: int
    live_tuples: int
    dead_tuples: int

    @property
    def dead_tuple_share(self) -> float | None:
        """n_dead_tup / (n_live_tup + n_dead_tup), None before statistics exist."""
        return _dead_share(self.live_tuples, self.dead_tuples)

    def to_json(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "visible": self.visible,
            "in_flight": self.in_flight,
            "retrying": self.retrying,
            "delayed": self.delayed,
            "oldest_age_seconds": self.oldest_age,
            "table_bytes": self.table_bytes,
            "archive_bytes": self.archive_bytes,
            "live_tuples": self.live_tuples,
            "dead_tuples": self.dead_tuples,
            "dead_tuple_share": self.dead_tuple_share,
        }


@dataclass(frozen=True)
class StepStatus:
    """One step: its queue's numbers, its recent activity and its dead letters."""

    pipeline: str
    step: str
    queue: str
    visibility_timeout: float
    numbers: QueueNumbers | None
    """None when the queue does not exist (dropped outside of `apply`)."""
    handed_off: int | None
    """Messages handed off in the window; None when the pipeline does not archive."""
    failures: int
    """Failed attempts in the window: of messages still queued, handed off, or dead-lettered."""
    dead_letters: int

    @property
    def attention(self) -> tuple[str, ...]:
        """Why this row needs a look: 'missing', 'dead letters', 'dead tuples', 'old messages'."""
        reasons = []
        if self.numbers is None:
            reasons.append("missing")
        if self.dead_letters:
            reasons.append("dead letters")
        if self.numbers is not None:
            share = self.numbers.dead_tuple_share
            enough = self.numbers.dead_tuples >= DEAD_TUPLE_MIN
            if enough and share is not None and share > DEAD_TUPLE_ALERT:
                reasons.append("dead tuples")
            oldest = self.numbers.oldest_age
            if oldest is not None and oldest > self.visibility_timeout:
                reasons.append("old messages")
        return tuple(reasons)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "queue": self.queue,
            "exists": self.numbers is not None,
            **(self.numbers.to_json() if self.numbers else {}),
            "handed_off": self.handed_off,
            "failures": self.failures,
            "dead_letters": self.dead_letters,
            "visibility_timeout": self.visibility_timeout,
            "attention": list(self.attention),
        }


@dataclass(frozen=True)
class JoinWaiting:
    """Runs waiting at one join step: some predecessors arrived, not all of them yet."""

    step: str
    waiting: int
    oldest_age: float | None
    """Seconds since the oldest waiting run's first predecessor arrived; None when none waits."""
    retention: float
    """`joins.incomplete_retention`: `maintain` deletes rows waiting longer than this."""

    def to_json(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "oldest_age_seconds": self.oldest_age,
            "incomplete_retention_seconds": self.retention,
        }


@dataclass(frozen=True)
class PipelineStatus:
    """One pipeline: its steps, its dead-letter queue and its schedules."""

    name: str
    applied_at: datetime
    archive_enabled: bool
    steps: tuple[StepStatus, ...]
    dead_letter_queue: str
    dead_letter_numbers: TableNumbers | None
    """None when the dead-letter queue does not exist."""
    dead_letter_steps: Mapping[str, int]
    """Dead letters per failed step, including steps the pipeline no longer has."""
    schedules: tuple[NextTick, ...]
    changed: bool | None = None
    """True when the pipeline file differs from what was applied; None when not compared."""
    flow: tuple[StepFlow, ...] = ()
    """Steps that are paused or limited, in step order."""
    cancelled_runs: int = 0
    joins: tuple[JoinWaiting, ...] = ()
    """Every join step of the pipeline, in step order."""
    subscriptions: tuple[str, ...] = ()
    """Topic patterns the pipeline subscribes to."""
    published: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(step, routing keys) of every step that publishes, in step order."""

    @property
    def dead_letters(self) -> int:
        return sum(self.dead_letter_steps.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.name,
            "applied_at": self.applied_at.isoformat(),
            "changed_since_apply": self.changed,
            "archive": self.archive_enabled,
            "steps": [s.to_json() for s in self.steps],
            "dead_letter_queue": {
                "queue": self.dead_letter_queue,
                "depth": self.dead_letters,
                "by_step": dict(self.dead_letter_steps),
                **(
                    {
                        "table_bytes": self.dead_letter_numbers.table_bytes,
                        "dead_tuple_share": self.dead_letter_numbers.dead_tuple_share,
                    }
                    if self.dead_letter_numbers
                    else {"exists": False}
                ),
            },
            "schedules": [s.to_json() for s in self.schedules],
            "flow": {f.step: f.to_json() for f in self.flow},
            "cancelled_runs": self.cancelled_runs,
            "joins": {j.step: j.to_json() for j in self.joins},
            "subscribe": list(self.subscriptions),
            "publish": {step: list(keys) for step, keys in self.published},
        }


@dataclass(frozen=True)
class StatusReport:
    """Every pipeline's status, measured at one moment of the database clock."""

    measured_at: datetime
    window: float
    pipelines: tuple[PipelineStatus, ...]
    horizon: tuple[HorizonHolder, ...] = ()
    """What has held vacuum back for longer than `horizon.HOLD_ALERT`."""

    def to_json(self) -> dict[str, Any]:
        return {
            "measured_at": self.measured_at.isoformat(),
            "window_seconds": self.window,
            "pipelines": [p.to_json() for p in self.pipelines],
            "vacuum_held_back_by": [h.to_json() for h in self.horizon],
        }


async def collect_status(
    conn: asyncpg.Connection,
    names: Sequence[str] | None = None,
    *,
    window: float = WINDOW,
    local_hashes: Mapping[str, str] | None = None,
) -> StatusReport:
    """Status of the applied pipelines `names` (all when None or empty).

    `local_hashes` (pipeline name -> spec hash of the file on disk) marks pipelines whose
    file changed since it was applied.
    """
    pipelines = await applied_pipelines(conn, names)
    measured_at: datetime = await conn.fetchval(query("clock"))
    since = measured_at - timedelta(seconds=window)
    queues = [s.queue for p in pipelines for s in p.steps]
    numbers = await _queue_numbers(conn, queues, since)
    dead_letter_tables = await _table_numbers(conn, [p.dead_letter_queue for p in pipelines])
    ticks = await next_ticks(conn, pipelines, measured_at)
    flow = await collect_flow(conn, names)
    cancelled = await cancelled_counts(conn, names)
    joins = await _waiting_joins(conn, pipelines, measured_at)
    report = []
    for pipeline in pipelines:
        dead = await _dead_letter_steps(conn, pipeline.dead_letter_queue, since)
        schedules = tuple(t for t in ticks if t.pipeline == pipeline.name)
        changed = None
        if local_hashes is not None and pipeline.name in local_hashes:
            changed = local_hashes[pipeline.name] != pipeline.spec_hash
        status = _pipeline_status(pipeline, numbers, dead_letter_tables, dead, schedules, changed)
        limits = (flow.get((pipeline.name, s.name)) for s in pipeline.steps)
        report.append(
            replace(
                status,
                flow=tuple(f for f in limits if f is not None and f.active),
                cancelled_runs=cancelled.get(pipeline.name, 0),
                joins=tuple(
                    JoinWaiting(
                        step,
                        *joins.get((pipeline.name, step), (0, None)),
                        pipeline.join_incomplete_retention,
                    )
                    for step in pipeline.join_steps
                ),
            )
        )
    holders = await horizon_holders(conn) if pipelines else ()
    return StatusReport(measured_at, window, tuple(report), holders)


def _pipeline_status(
    pipeline: AppliedPipeline,
    numbers: Mapping[str, QueueNumbers],
    tables: Mapping[str, TableNumbers],
    dead: Mapping[str | None, tuple[int, int]],  # (depth, failed attempts in the window)
    schedules: tuple[NextTick, ...],
    changed: bool | None,
) -> PipelineStatus:
    steps = []
    for step in pipeline.steps:
        queue = numbers.get(step.queue)
        depth, recent = dead.get(step.name, (0, 0))
        steps.append(
            StepStatus(
                pipeline=pipeline.name,
                step=step.name,
                queue=step.queue,
                visibility_timeout=step.visibility_timeout,
                numbers=queue,
                handed_off=(queue.handed_off if queue else 0) if pipeline.archive_enabled else None,
                failures=(queue.failures if queue else 0) + recent,
                dead_letters=depth,
            )
        )
    return PipelineStatus(
        name=pipeline.name,
        applied_at=pipeline.applied_at,
        archive_enabled=pipeline.archive_enabled,
        steps=tuple(steps),
        dead_letter_queue=pipeline.dead_letter_queue,
        dead_letter_numbers=tables.get(pipeline.dead_letter_queue),
        dead_letter_steps={str(k or "?"): v[0] for k, v in dead.items()},
        schedules=schedules,
        changed=changed,
        subscriptions=pipeline.subscriptions,
        published=pipeline.published,
    )


async def _queue_numbers(
    conn: asyncpg.Connection, queues: list[str], since: datetime
) -> dict[str, QueueNumbers]:
    rows = await conn.fetch(query("queue_stats"), queues, since)
    found = {}
    for r in rows:
        if r["waiting"] is None:
            continue  # the queue does not exist
        oldest = r["oldest_enqueued_at"]
        found[r["queue_name"]] = QueueNumbers(
            waiting=r["waiting"],
            visible=r["visible"],
            in_flight=r["in_flight"],
            retrying=r["retrying"],
            delayed=r["delayed"],
            oldest_age=(r["measured_at"] - oldest).total_seconds() if oldest else None,
            failures=r["failures"],
            handed_off=r["handed_off"],
            table_bytes=r["table_bytes"],
            archive_bytes=r["archive_bytes"],
            live_tuples=r["live_tuples"],
            dead_tuples=r["dead_tuples"],
        )
    return found


async def _table_numbers(conn: asyncpg.Connection, queues: list[str]) -> dict[str, TableNumbers]:
    rows = await conn.fetch(query("queue_table_numbers"), queues)
    return {
        r["queue_name"]: TableNumbers(r["table_bytes"], r["live_tuples"], r["dead_tuples"])
        for r in rows
    }


async def _dead_letter_steps(
    conn: asyncpg.Connection, queue: str, since: datetime
) -> dict[str | None, tuple[int, int]]:
    """(depth, failed attempts since `since`) per failed step of dead-letter queue `queue`."""
    rows = await conn.fetch(query("dead_letter_stats"), queue, since)
    return {r["step"]: (int(r["depth"]), int(r["recent_failures"])) for r in rows}


async def _waiting_joins(
    conn: asyncpg.Connection, pipelines: Sequence[AppliedPipeline], now: datetime
) -> dict[tuple[str, str], tuple[int, float | None]]:
    """(runs waiting, age of the oldest) per (pipeline, join step)."""
    keys = [(p.name, step) for p in pipelines for step in p.join_steps]
    if not keys:
        return {}
    rows = await conn.fetch(query("waiting_joins"), [k[0] for k in keys], [k[1] for k in keys])
    found = {}
    for r in rows:
        oldest = r["oldest_created_at"]
        age = max(0.0, (now - oldest).total_seconds()) if oldest else None
        found[(r["pipeline"], r["step"])] = (int(r["waiting"]), age)
    return found
