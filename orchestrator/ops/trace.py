"""`orchestrator trace RUN_ID`: one run's timeline across its steps.

Every message of a run carries the run id in its headers, so the run is found in the step
queues (still waiting or being worked on), their archives (done: the archive is the run's
history) and the dead-letter queue (failed), through the `(headers->>'run_id')` indexes.
Join steps still waiting for predecessors show up from `orchestrator.joins`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from orchestrator.errors import NotFound, OrchestratorError
from orchestrator.ops.dlq import DeadLetter
from orchestrator.ops.flow import Cancellation, run_cancellation
from orchestrator.ops.queries import query
from orchestrator.state import AppliedPipeline, applied_pipelines

_END = datetime.max.replace(tzinfo=UTC)

PENDING = ("waiting", "in flight", "retrying", "delayed")
"""States of a message still in its step queue."""


def parse_run_id(text: str) -> str:
    """The canonical form of a run id (a UUID, with or without dashes)."""
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise OrchestratorError(
            f"malformed run id '{text}': expected a UUID such as "
            "'3f2c8a4e-9d1b-4c7a-8e5f-0a1b2c3d4e5f'"
        ) from None


@dataclass(frozen=True)
class TraceEntry:
    """One message of the run: a step's input, where it is and what happened to it."""

    pipeline: str
    step: str | None
    queue: str
    msg_id: int | None
    """The step message's id in its queue (for a dead letter: the id it had there)."""
    state: str
    """waiting, in flight, retrying, delayed, done or dead letter."""
    sent: datetime | None
    started: datetime | None
    """When the last attempt started."""
    finished: datetime | None
    """Handed off (done) or given up (dead letter)."""
    attempts: int | None
    errors: tuple[Mapping[str, Any], ...]
    parent_id: int | None = None
    parent_step: str | None = None
    dead_letter_id: int | None = None
    replayed_from: int | None = None
    visible_at: datetime | None = None
    payload: Any = None
    """The step's input (the message body; for a dead letter, the payload it failed on)."""
    published: Mapping[str, Any] | None = None
    """Where a run started by a topic came from: its ``published`` header (topic, pipeline,
    step, run_id, msg_id of the publishing step's message)."""

    @property
    def duration(self) -> float | None:
        """Seconds from sent to finished."""
        if self.sent is None or self.finished is None:
            return None
        return (self.finished - self.sent).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "step": self.step,
            "queue": self.queue,
            "msg_id": self.msg_id,
            "state": self.state,
            "sent": _iso(self.sent),
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "attempts": self.attempts,
            "errors": list(self.errors),
            "parent_id": self.parent_id,
            "parent_step": self.parent_step,
            "dead_letter_id": self.dead_letter_id,
            "replayed_from": self.replayed_from,
            "visible_at": _iso(self.visible_at),
            "published": dict(self.published) if self.published else None,
        }


@dataclass(frozen=True)
class JoinState:
    """A join step of the run: which predecessors arrived."""

    pipeline: str
    step: str
    arrived: tuple[str, ...]
    expected: tuple[str, ...]
    completed_at: datetime | None

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(s for s in self.expected if s not in self.arrived)

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "step": self.step,
            "arrived": list(self.arrived),
            "expected": list(self.expected),
            "completed_at": _iso(self.completed_at),
        }


@dataclass(frozen=True)
class Trace:
    """The whole run as the database knows it, measured at `measured_at`."""

    run_id: str
    measured_at: datetime
    entries: tuple[TraceEntry, ...]
    joins: tuple[JoinState, ...]
    unrecorded: tuple[str, ...] = ()
    """Steps of the run's pipelines with no message of the run (not reached, or not archived)."""
    ends: tuple[str, ...] = ()
    """The last steps (no successors) of the run's pipelines."""
    cancelled: Cancellation | None = None

    @property
    def published(self) -> Mapping[str, Any] | None:
        """The ``published`` header of the run's first message: the run was started by a
        topic (None when it was started otherwise)."""
        return next((e.published for e in self.entries if e.published), None)

    @property
    def pipelines(self) -> tuple[str, ...]:
        return tuple(
            dict.fromkeys([e.pipeline for e in self.entries] + [j.pipeline for j in self.joins])
        )

    @property
    def state(self) -> str:
        """running (messages pending), cancelled, failed (dead letters, nothing pending), done
        (a last step finished) or unknown (nothing pending, but no record of any last step: it
        was not archived, or a handler ended the run early)."""
        if self.cancelled is not None and not any(e.state == "in flight" for e in self.entries):
            return "cancelled"
        if any(e.state in PENDING for e in self.entries):
            return "running"
        if any(e.state == "dead letter" for e in self.entries):
            return "failed"
        if any(j.completed_at is None for j in self.joins):
            return "waiting"
        if self.ends and not any(e.step in self.ends for e in self.entries):
            return "unknown"
        return "done"

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "state": self.state,
            "pipelines": list(self.pipelines),
            "measured_at": self.measured_at.isoformat(),
            "messages": [e.to_json() for e in self.entries],
            "joins": [j.to_json() for j in self.joins],
            "unrecorded_steps": list(self.unrecorded),
            "cancelled": self.cancelled.to_json() if self.cancelled else None,
            "published": dict(self.published) if self.published else None,
        }


async def trace_run(
    conn: asyncpg.Connection, run_id: str, pipelines: Sequence[str] | None = None
) -> Trace:
    """Every message and join of run `run_id` (in the applied pipelines `pipelines`, default
    all). Raises `OrchestratorError` for a malformed id, `NotFound` when nothing is left of it.
    """
    run = parse_run_id(run_id)
    applied = await applied_pipelines(conn, pipelines)
    owners = _queue_owners(applied)
    measured_at: datetime = await conn.fetchval(query("clock"))
    rows = await conn.fetch(query("run_messages"), list(owners), run)
    entries = [_entry(owners[r["queue_name"]], r, measured_at) for r in rows]
    entries.sort(key=_timeline_key)
    joins = [_join(r) for r in await conn.fetch(query("run_joins"), run)]
    known = {p.name for p in applied}
    joins = [j for j in joins if j.pipeline in known]
    cancelled = await run_cancellation(conn, run)
    if cancelled is not None and cancelled.pipeline not in known:
        cancelled = None
    if not entries and not joins and cancelled is None:
        raise NotFound(
            f"no run {run} in the queues, archives or dead letters of "
            f"{'pipeline ' + ', '.join(sorted(known)) if pipelines else 'any applied pipeline'} "
            "(a finished run is gone when its pipeline does not archive, or after the archive "
            "retention)"
        )
    involved = [p for p in applied if p.name in {e.pipeline for e in entries}]
    seen = {(e.pipeline, e.step) for e in entries} | {(j.pipeline, j.step) for j in joins}
    unrecorded = [s.name for p in involved for s in p.steps if (p.name, s.name) not in seen]
    ends = [s.name for p in involved for s in p.steps if not s.successors]
    return Trace(
        run, measured_at, tuple(entries), tuple(joins), tuple(unrecorded), tuple(ends), cancelled
    )


@dataclass(frozen=True)
class _Owner:
    pipeline: AppliedPipeline
    step: str | None
    """None for the dead-letter queue."""


def _queue_owners(pipelines: Sequence[AppliedPipeline]) -> dict[str, _Owner]:
    owners: dict[str, _Owner] = {}
    for pipeline in pipelines:
        for step in pipeline.steps:
            owners[step.queue] = _Owner(pipeline, step.name)
        owners[pipeline.dead_letter_queue] = _Owner(pipeline, None)
    return owners


def _entry(owner: _Owner, row: asyncpg.Record, now: datetime) -> TraceEntry:
    if owner.step is None:
        return _dead_letter_entry(owner.pipeline, row)
    headers = row["headers"] if isinstance(row["headers"], dict) else {}
    errors = headers.get("errors")
    done = row["place"] == "archive"
    return TraceEntry(
        pipeline=owner.pipeline.name,
        step=owner.step,
        queue=row["queue_name"],
        msg_id=row["msg_id"],
        state="done" if done else _pending_state(row, errors, now),
        sent=row["enqueued_at"],
        started=row["last_read_at"],
        finished=row["archived_at"] if done else None,
        attempts=row["read_ct"],
        errors=tuple(e for e in errors if isinstance(e, dict)) if isinstance(errors, list) else (),
        parent_id=_integer(headers.get("parent_id")),
        parent_step=_text(headers.get("parent_step")),
        replayed_from=_integer(headers.get("replayed_from")),
        visible_at=None if done else row["vt"],
        payload=row["message"],
        published=_published(headers),
    )


def _pending_state(row: asyncpg.Record, errors: Any, now: datetime) -> str:
    if row["vt"] <= now:
        return "waiting"
    if row["read_ct"] == 0:
        return "delayed"
    last = errors[-1] if isinstance(errors, list) and errors else None
    attempt = last.get("attempt") if isinstance(last, dict) else None
    if isinstance(attempt, int | float) and attempt >= row["read_ct"]:
        return "retrying"
    return "in flight"


def _dead_letter_entry(pipeline: AppliedPipeline, row: asyncpg.Record) -> TraceEntry:
    dead = DeadLetter.from_record(pipeline.name, row)
    errors = [e for e in dead.errors if isinstance(e, dict)]
    if not errors or errors[-1].get("attempt") != dead.attempts:
        # The final attempt's error is normally in the headers already; add it if not.
        errors.append(
            {
                "attempt": dead.attempts,
                "type": dead.error_type,
                "message": dead.error_message,
                "at": dead.failed_at,
            }
        )
    step_queue = dead.queue or (
        pipeline.queue_name(dead.step) if dead.step in pipeline.step_names else "?"
    )
    headers = dead.headers or {}
    return TraceEntry(
        pipeline=pipeline.name,
        step=dead.step,
        queue=step_queue,
        msg_id=dead.msg_id,
        state="dead letter",
        sent=_moment(headers.get("sent_at")),
        started=None,
        finished=_moment(dead.failed_at) or dead.entered_at,
        attempts=dead.attempts,
        errors=tuple(errors),
        parent_id=_integer(headers.get("parent_id")),
        parent_step=_text(headers.get("parent_step")),
        dead_letter_id=dead.id,
        replayed_from=_integer(headers.get("replayed_from")),
        payload=dead.payload,
    )


def _published(headers: Mapping[str, Any]) -> Mapping[str, Any] | None:
    origin = headers.get("published")
    return origin if isinstance(origin, dict) else None


def _join(row: asyncpg.Record) -> JoinState:
    arrived = row["arrived"] if isinstance(row["arrived"], dict) else {}
    return JoinState(
        pipeline=row["pipeline"],
        step=row["step"],
        arrived=tuple(arrived),
        expected=tuple(row["expected"]),
        completed_at=row["completed_at"],
    )


def _timeline_key(entry: TraceEntry) -> tuple[datetime, int]:
    return (entry.sent or entry.finished or _END, entry.msg_id or 0)


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
