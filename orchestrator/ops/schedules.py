"""Schedules: cron ticks that start runs of a pipeline, each tick exactly once.

The runtime's leader calls `fire_due` every few seconds; any number of processes may call it
at once. Each schedule is handled in one transaction that locks its row of
``orchestrator.schedules`` (FOR UPDATE), works out the ticks due since the recorded
``last_tick``, starts one run per due tick, records the new ``last_tick``/``next_tick`` and
commits. A concurrent caller waits for the lock and then finds nothing due; a crash before
the commit leaves neither runs nor a new ``last_tick``. So restarts neither skip nor repeat a
tick, as long as the tick is within the schedule's catch-up window.

``last_tick`` means "every tick up to this moment is handled" (fired, or skipped because it
was older than the catch-up window). A schedule seen for the first time counts from that
moment (``updated_at``); ticks before it never fire.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import asyncpg
import orjson

from orchestrator.ops.queries import query
from orchestrator.spec import Schedule
from orchestrator.spec.durations import format_duration

_log = logging.getLogger(__name__)

ON_TIME = 60.0
"""Seconds a tick may be late and still count as on time, whatever its catch-up window: a
scheduler polling every few seconds fires every tick, even with `catch_up: 0`."""

MAX_TICKS_PER_CALL = 1000
"""Runs one schedule starts per call at most; the rest follow on the next calls."""


class Schedulable(Protocol):
    """A pipeline with schedules: a `Pipeline` model or an applied pipeline's read model."""

    @property
    def name(self) -> str: ...

    @property
    def schedules(self) -> Sequence[Schedule]: ...


@dataclass(frozen=True)
class Fired:
    """A run started by a schedule tick."""

    pipeline: str
    schedule: str
    tick: datetime
    run_id: str


@dataclass(frozen=True)
class TickPlan:
    """Ticks of one schedule between its last handled tick and now."""

    due: tuple[datetime, ...]
    """Ticks to fire, oldest first (at most MAX_TICKS_PER_CALL)."""
    skipped_from: datetime | None
    """First tick skipped as older than the catch-up window (None: nothing skipped)."""
    window_start: datetime
    """Ticks before this moment are skipped."""
    handled_until: datetime | None
    """The new last_tick: the last tick fired, else the window start when ticks were skipped,
    else None (nothing changed)."""
    next_tick: datetime
    """First tick after the handled ones."""


def plan_ticks(
    schedule: Schedule, since: datetime, now: datetime, *, on_time: float = ON_TIME
) -> TickPlan:
    """Which ticks of `schedule` after `since` are due at `now`, and which are too old."""
    window_start = now - timedelta(seconds=max(schedule.catch_up, on_time))
    tick = schedule.next_after(since)
    skipped_from = None
    if tick < window_start:
        skipped_from = tick
        tick = schedule.next_after(window_start - timedelta(microseconds=1))
    due: list[datetime] = []
    while tick <= now and len(due) < MAX_TICKS_PER_CALL:
        due.append(tick)
        tick = schedule.next_after(tick)
    handled = due[-1] if due else (window_start if skipped_from is not None else None)
    return TickPlan(tuple(due), skipped_from, window_start, handled, tick)


async def fire_due(
    conn: asyncpg.Connection,
    pipelines: Iterable[Schedulable],
    now: datetime | None = None,
    *,
    on_time: float = ON_TIME,
) -> list[Fired]:
    """Start a run for every due tick of every schedule of `pipelines`; returns what fired.

    `now` defaults to the database clock. Each schedule is one transaction, so call this
    outside a transaction. A schedule whose runs cannot be started (its entry queue is gone)
    is logged and left for the next call; the others still fire.
    """
    fired: list[Fired] = []
    for pipeline in pipelines:
        for schedule in pipeline.schedules:
            try:
                fired += await fire_schedule(conn, pipeline, schedule, now, on_time=on_time)
            except asyncpg.PostgresError as exc:
                _log.error(
                    "schedule %r of pipeline %s could not start its runs: %s",
                    schedule.key,
                    pipeline.name,
                    exc,
                    extra={"pipeline": pipeline.name},
                )
    return fired


async def fire_schedule(
    conn: asyncpg.Connection,
    pipeline: Schedulable,
    schedule: Schedule,
    now: datetime | None = None,
    *,
    on_time: float = ON_TIME,
) -> list[Fired]:
    """`fire_due` for one schedule, in one transaction (logged once it committed)."""
    async with conn.transaction():
        moment = now or await conn.fetchval(query("clock"))
        row = await _locked_row(conn, pipeline.name, schedule, moment)
        since = row["last_tick"] or row["updated_at"]
        plan = plan_ticks(schedule, since, moment, on_time=on_time)
        fired = await _start_runs(conn, pipeline, schedule, plan.due)
        if (
            plan.handled_until is not None
            or row["cron"] != schedule.cron
            or row["next_tick"] != plan.next_tick
        ):
            last = plan.handled_until or row["last_tick"]
            await conn.execute(
                query("update_schedule"),
                pipeline.name,
                schedule.key,
                schedule.cron,
                last,
                plan.next_tick,
                moment,
            )
    if plan.skipped_from is not None:
        _log_skipped(pipeline.name, schedule, plan)
    for run in fired:
        _log.info(
            "schedule %r started run %s (tick %s)",
            run.schedule,
            run.run_id,
            run.tick.isoformat(),
            extra={"pipeline": run.pipeline, "run_id": run.run_id},
        )
    return fired


async def _locked_row(
    conn: asyncpg.Connection, pipeline: str, schedule: Schedule, moment: datetime
) -> asyncpg.Record:
    row = await conn.fetchrow(query("lock_schedule"), pipeline, schedule.key)
    if row is None:
        # Another caller may insert the row at the same moment: ON CONFLICT waits for it, and
        # the second SELECT ... FOR UPDATE then waits for its transaction to end.
        await conn.execute(
            query("insert_schedule"),
            pipeline,
            schedule.key,
            schedule.cron,
            moment,
            schedule.next_after(moment),
        )
        row = await conn.fetchrow(query("lock_schedule"), pipeline, schedule.key)
    assert row is not None
    return row


def _log_skipped(pipeline: str, schedule: Schedule, plan: TickPlan) -> None:
    _log.warning(
        "schedule %r of pipeline %s: skipped the ticks from %s until %s: they are older than "
        "its catch-up window (%s)",
        schedule.key,
        pipeline,
        plan.skipped_from.isoformat() if plan.skipped_from else "?",
        plan.window_start.isoformat(),
        format_duration(schedule.catch_up),
        extra={"pipeline": pipeline},
    )


async def _start_runs(
    conn: asyncpg.Connection,
    pipeline: Schedulable,
    schedule: Schedule,
    ticks: Sequence[datetime],
) -> list[Fired]:
    """Start one run per tick (`orchestrator.start_runs`: the entry step's queue, the
    documented headers, the entry step's delay), in the caller's transaction."""
    if not ticks:
        return []
    extra = [{"schedule": schedule.key, "tick": tick.isoformat()} for tick in ticks]
    body = orjson.dumps(schedule.payload).decode()
    rows = await conn.fetch(
        query("start_runs"),
        pipeline.name,
        [body] * len(ticks),
        [orjson.dumps(h).decode() for h in extra],
    )
    return [
        Fired(pipeline.name, schedule.key, tick, str(row["run_id"]))
        for tick, row in zip(ticks, rows, strict=True)
    ]


@dataclass(frozen=True)
class NextTick:
    """When a schedule fires next (and last fired), for `orchestrator status`."""

    pipeline: str
    schedule: str
    cron: str
    timezone: str
    next_tick: datetime
    last_tick: datetime | None
    recorded: bool = field(default=True)
    """False when no scheduler has seen the schedule yet (next_tick is computed)."""

    def overdue(self, now: datetime, on_time: float = ON_TIME) -> bool:
        """True when the next tick is past by more than `on_time`: no scheduler is firing it."""
        return self.next_tick < now - timedelta(seconds=on_time)

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "schedule": self.schedule,
            "cron": self.cron,
            "timezone": self.timezone,
            "next_tick": self.next_tick.isoformat(),
            "last_tick": self.last_tick.isoformat() if self.last_tick else None,
            "recorded": self.recorded,
        }


async def next_ticks(
    conn: asyncpg.Connection,
    pipelines: Sequence[Schedulable] | None = None,
    now: datetime | None = None,
) -> list[NextTick]:
    """The next tick of every schedule of `pipelines` (default: every applied pipeline).

    A recorded next tick is reported as recorded, even when it is long past (then no
    scheduler is running: see `NextTick.overdue`).
    """
    if pipelines is None:
        from orchestrator.state import applied_pipelines

        pipelines = await applied_pipelines(conn)
    moment = now or await conn.fetchval(query("clock"))
    rows = {(r["pipeline"], r["name"]): r for r in await conn.fetch(query("schedule_rows"))}
    found: list[NextTick] = []
    for pipeline in pipelines:
        for schedule in pipeline.schedules:
            found.append(
                _next_tick(pipeline.name, schedule, rows.get((pipeline.name, schedule.key)), moment)
            )
    return found


def _next_tick(
    pipeline: str, schedule: Schedule, row: asyncpg.Record | None, moment: datetime
) -> NextTick:
    if row is None:
        return NextTick(
            pipeline,
            schedule.key,
            schedule.cron,
            schedule.timezone,
            schedule.next_after(moment),
            None,
            recorded=False,
        )
    next_tick = row["next_tick"]
    if row["cron"] != schedule.cron or next_tick is None:
        next_tick = schedule.next_after(row["last_tick"] or row["updated_at"])
    return NextTick(
        pipeline, schedule.key, schedule.cron, schedule.timezone, next_tick, row["last_tick"]
    )
