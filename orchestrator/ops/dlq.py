"""Dead letters: list them, show one in full, replay them into their step, purge them.

A dead letter's body follows the message contract (docs/architecture.md, "Messages"). A
replay sends the original payload with its original headers (minus the recorded errors, so
attempts start again) back to the queue of the step it failed in and deletes the dead letter
in the same transaction; rows are taken FOR UPDATE SKIP LOCKED, so repeating a replay, or
running two at once, never sends a dead letter twice. Large replays and purges go in batches,
one transaction each, and report progress after each batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from orchestrator.errors import NotFound, UsageError
from orchestrator.ops.queries import query
from orchestrator.spec.suggest import did_you_mean
from orchestrator.state import AppliedPipeline, applied_pipeline, applied_pipelines

MAX_ID = 2**63 - 1
"""Largest message id (bigint)."""

REPLAY_BATCH = 500
PURGE_BATCH = 5000


@dataclass(frozen=True)
class DeadLetter:
    """One message of a dead-letter queue, its body unpacked (missing fields are None)."""

    id: int
    pipeline: str
    entered_at: datetime
    step: str | None
    queue: str | None
    run_id: str | None
    msg_id: int | None
    payload: Any
    headers: Mapping[str, Any] | None
    attempts: int | None
    failed_at: str | None
    permanent: bool
    error_type: str | None
    error_message: str | None
    traceback: str | None

    @classmethod
    def from_record(cls, pipeline: str, record: asyncpg.Record) -> DeadLetter:
        """From a `pgmq.message_record` row of the pipeline's dead-letter queue."""
        body = _mapping(record["message"])
        own = _mapping(record["headers"])
        error = _mapping(body.get("error"))
        headers = body.get("headers")
        return cls(
            id=int(record["msg_id"]),
            pipeline=pipeline,
            entered_at=record["enqueued_at"],
            step=_text(body.get("step", own.get("step"))),
            queue=_text(body.get("queue")),
            run_id=_text(body.get("run_id", own.get("run_id"))),
            msg_id=_integer(body.get("msg_id")),
            payload=body.get("payload"),
            headers=headers if isinstance(headers, dict) else None,
            attempts=_integer(body.get("attempts")),
            failed_at=_text(body.get("failed_at")),
            permanent=bool(body.get("permanent", False)),
            error_type=_text(error.get("type")),
            error_message=_text(error.get("message")),
            traceback=_text(error.get("traceback")),
        )

    @property
    def error(self) -> str:
        """'Type: message' on one line (either part may be missing)."""
        parts = [p for p in (self.error_type, self.error_message) if p]
        return ": ".join(parts) if parts else "(no error recorded)"

    @property
    def errors(self) -> list[Any]:
        """The recorded failed attempts (the runtime keeps the last five, the final one
        included), from the original headers."""
        found = (self.headers or {}).get("errors")
        return found if isinstance(found, list) else []

    def to_json(self, *, full: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "pipeline": self.pipeline,
            "step": self.step,
            "run_id": self.run_id,
            "msg_id": self.msg_id,
            "attempts": self.attempts,
            "failed_at": self.failed_at,
            "entered_at": self.entered_at.isoformat(),
            "permanent": self.permanent,
            "error": {"type": self.error_type, "message": self.error_message},
        }
        if full:
            data["queue"] = self.queue
            data["error"]["traceback"] = self.traceback
            data["payload"] = self.payload
            data["headers"] = self.headers
        return data


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Filter:
    """Which dead letters an operation applies to (None: no condition)."""

    step: str | None = None
    error: str | None = None
    """Text contained in the error's type or message, case-insensitive."""
    since: float | None = None
    """Entered the dead-letter queue at most this many seconds ago."""
    before: float | None = None
    """Entered the dead-letter queue more than this many seconds ago."""
    ids: tuple[int, ...] | None = None


async def _window(conn: asyncpg.Connection, seconds: float | None) -> datetime | None:
    if seconds is None:
        return None
    now: datetime = await conn.fetchval(query("clock"))
    return now - timedelta(seconds=seconds)


async def _check_step(
    conn: asyncpg.Connection, pipeline: AppliedPipeline, step: str | None
) -> None:
    """A step filter must name a step of the pipeline, or one its dead letters still name."""
    if step is None or step in pipeline.step_names:
        return
    rows = await conn.fetch(query("dead_letter_stats"), pipeline.dead_letter_queue, None)
    known = [*pipeline.step_names, *(r["step"] for r in rows if r["step"])]
    if step not in known:
        raise NotFound(
            f"pipeline '{pipeline.name}' has no step '{step}'{did_you_mean(step, known)} "
            f"(steps: {', '.join(pipeline.step_names)})"
        )


async def list_dead_letters(
    conn: asyncpg.Connection, pipeline: str, where: Filter = Filter(), *, limit: int = 100
) -> list[DeadLetter]:
    """Dead letters of `pipeline` matching `where`, newest first, at most `limit`."""
    applied = await applied_pipeline(conn, pipeline)
    await _check_step(conn, applied, where.step)
    rows = await conn.fetch(
        query("dead_letters"),
        applied.dead_letter_queue,
        where.step,
        where.error,
        await _window(conn, where.since),
        await _window(conn, where.before),
        list(where.ids) if where.ids is not None else None,
        limit,
    )
    return [DeadLetter.from_record(applied.name, r) for r in rows]


async def count_dead_letters(
    conn: asyncpg.Connection, pipeline: AppliedPipeline, where: Filter = Filter()
) -> int:
    """How many dead letters of `pipeline` match `where`."""
    found: int = await conn.fetchval(
        query("count_dead_letters"),
        pipeline.dead_letter_queue,
        where.step,
        where.error,
        await _window(conn, where.since),
        await _window(conn, where.before),
        list(where.ids) if where.ids is not None else None,
    )
    return found


async def get_dead_letter(
    conn: asyncpg.Connection, dead_letter_id: int, pipeline: str | None = None
) -> DeadLetter:
    """Dead letter `dead_letter_id` of `pipeline`, or of whichever pipeline has one with that id.

    Ids are per dead-letter queue: when several pipelines have the id, `pipeline` must say
    which (`UsageError`); `NotFound` when none has it.
    """
    pipelines = await applied_pipelines(conn, [pipeline] if pipeline else None)
    found = []
    for candidate in pipelines:
        rows = await conn.fetch(
            query("dead_letters"),
            candidate.dead_letter_queue,
            None,
            None,
            None,
            None,
            [dead_letter_id],
            1,
        )
        found += [DeadLetter.from_record(candidate.name, r) for r in rows]
    if not found:
        where = f"pipeline '{pipeline}'" if pipeline else "any pipeline"
        raise NotFound(f"no dead letter {dead_letter_id} in {where}")
    if len(found) > 1:
        names = ", ".join(d.pipeline for d in found)
        raise UsageError(
            f"dead letter {dead_letter_id} exists in several pipelines ({names}); "
            "name the pipeline with --pipeline"
        )
    return found[0]


@dataclass(frozen=True)
class Replayed:
    """One dead letter handled by a replay: sent back (`msg_id`) or left in place (`reason`)."""

    dead_letter_id: int
    step: str | None
    outcome: str
    """'replayed', or why it stayed: 'no step', 'unknown step', 'no payload'."""
    msg_id: int | None


@dataclass
class ReplayReport:
    """What a replay did."""

    pipeline: str
    replayed: list[Replayed] = field(default_factory=list)
    left: list[Replayed] = field(default_factory=list)
    """Dead letters that could not be replayed and stay in the dead-letter queue."""
    missing_ids: list[int] = field(default_factory=list)
    """Requested ids not in the dead-letter queue (already replayed or purged, or never were)."""

    def by_step(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.replayed:
            counts[item.step or "?"] = counts.get(item.step or "?", 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "replayed": len(self.replayed),
            "by_step": self.by_step(),
            "messages": [
                {"dead_letter_id": r.dead_letter_id, "step": r.step, "msg_id": r.msg_id}
                for r in self.replayed
            ],
            "left": [
                {"dead_letter_id": r.dead_letter_id, "step": r.step, "reason": r.outcome}
                for r in self.left
            ],
            "missing_ids": self.missing_ids,
        }


def _require_selection(where: Filter, everything: bool) -> None:
    if not everything and where.ids is None and where.step is None and where.error is None:
        raise UsageError("say which dead letters: --ids, --step, --error or --all")


async def replay_dead_letters(
    conn: asyncpg.Connection,
    pipeline: str,
    where: Filter = Filter(),
    *,
    everything: bool = False,
    batch: int = REPLAY_BATCH,
    on_batch: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Send the selected dead letters of `pipeline` back to their steps.

    Select with `where` (ids, step, error; since/before are not used), or everything with
    `everything=True`. Each batch is one transaction. `on_total(n)` is called once with the
    number of matching dead letters, `on_batch(n)` after each committed batch.
    """
    _require_selection(where, everything)
    applied = await applied_pipeline(conn, pipeline)
    await _check_step(conn, applied, where.step)
    selection = Filter(step=where.step, error=where.error, ids=where.ids)
    if on_total is not None:
        on_total(await count_dead_letters(conn, applied, selection))
    report = ReplayReport(applied.name)
    after: int | None = None
    while True:
        async with conn.transaction():
            rows = await conn.fetch(
                query("replay_dead_letters"),
                applied.dead_letter_queue,
                applied.name,
                selection.step,
                selection.error,
                list(selection.ids) if selection.ids is not None else None,
                after,
                batch,
            )
        for r in rows:
            item = Replayed(r["dead_letter_id"], r["step_name"], r["outcome"], r["new_msg_id"])
            (report.replayed if item.outcome == "replayed" else report.left).append(item)
        if on_batch is not None and rows:
            on_batch(len(rows))
        if len(rows) < batch:
            break
        after = max(r["dead_letter_id"] for r in rows)
    if selection.ids is not None:
        seen = {r.dead_letter_id for r in report.replayed + report.left}
        report.missing_ids = sorted(set(selection.ids) - seen)
    return report


async def purge_dead_letters(
    conn: asyncpg.Connection,
    pipeline: str,
    where: Filter = Filter(),
    *,
    batch: int = PURGE_BATCH,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Delete the dead letters of `pipeline` (of one step, older than `before`); returns how
    many. Each batch is one transaction; dead letters a replay holds are left alone."""
    applied = await applied_pipeline(conn, pipeline)
    await _check_step(conn, applied, where.step)
    before = await _window(conn, where.before)
    total = 0
    while True:
        async with conn.transaction():
            deleted: int = await conn.fetchval(
                query("purge_dead_letters"), applied.dead_letter_queue, where.step, before, batch
            )
        total += deleted
        if on_batch is not None and deleted:
            on_batch(deleted)
        if deleted < batch:
            return total


def parse_id(text: str) -> int:
    """One dead-letter id from the command line; `UsageError` unless it is one."""
    if not text.isdigit() or int(text) > MAX_ID:
        raise UsageError(f"invalid dead-letter id '{text}': expected a number")
    return int(text)


def parse_ids(values: Sequence[str]) -> tuple[int, ...]:
    """Dead-letter ids from the command line: '12', '12,13', '12-20'; `UsageError` otherwise."""
    ids: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            first, dash, last = part.partition("-")
            if not first.isdigit() or (dash and not last.isdigit()):
                raise UsageError(
                    f"invalid dead-letter id '{part}': use numbers such as 12, 12,13 or 12-20"
                )
            low, high = int(first), int(last) if dash else int(first)
            if high < low or high - low > 1_000_000 or high > MAX_ID:
                raise UsageError(f"invalid dead-letter id range '{part}'")
            ids.extend(range(low, high + 1))
    if not ids:
        raise UsageError("--ids needs at least one dead-letter id")
    return tuple(dict.fromkeys(ids))
