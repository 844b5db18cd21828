"""The latest runs of a pipeline: a page at a time, filtered by state or by a payload field.

A run begins as one message of the pipeline's entry step, so its entry message (in the entry
queue while it waits, in the archive once handed off) is the run's row: its msg_id orders the
runs, its body is the run's payload. Pages are keyset pages over msg_id: each page reads
windows of ids through the primary keys (`WINDOW` ids at a time, `SCAN_BUDGET` ids per page
at most), so page 1000 costs what page 1 costs, whatever the archive holds. A page's runs
get their state from the step queues (pending messages: running) and the dead-letter queue
(dead-lettered), through the run-id indexes, as `trace` finds them. A filter that matches
rarely may end a page early: the page then says where the search stopped (`next_before`)
and the next page carries on from there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from orchestrator.errors import UsageError
from orchestrator.ops.queries import query
from orchestrator.state.applied import AppliedPipeline, applied_pipeline

STATES = ("running", "done", "dead-lettered")
"""Run states a page can be filtered by."""

WINDOW = 20_000
"""Entry-message ids one query looks at, at most."""

SCAN_BUDGET = 40_000
"""Entry-message ids one page looks at, at most: a rare payload value or state ends a page
early (with `next_before` where the search stopped) rather than reading the whole archive."""

_FIELD = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*=\s*(.+?)\s*$")


@dataclass(frozen=True)
class RunRow:
    """One run: its id, when it started, its payload and its state."""

    run_id: str
    pipeline: str
    msg_id: int
    started: datetime
    payload: Any
    state: str

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "started": self.started.isoformat(),
            "state": self.state,
            "payload": self.payload,
        }


@dataclass(frozen=True)
class RunPage:
    """A page of runs, newest first, and where the next page starts (None: no more)."""

    runs: tuple[RunRow, ...]
    next_before: int | None
    searched_to: int
    """Entry-message id the search reached (runs below it were not looked at)."""


def parse_payload_filter(text: str) -> dict[str, Any]:
    """`customer_id = 42` (or `customer.id = "x"`) as the JSON object a payload must contain.

    The value is JSON when it parses as JSON (42, true, "42"), else the text itself.
    `UsageError` when the text is not `field = value`.
    """
    match = _FIELD.match(text)
    if match is None:
        raise UsageError(
            f"invalid payload filter '{text}': write field = value, e.g. customer_id = 42"
        )
    path, raw = match.groups()
    try:
        value: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    found: dict[str, Any] = {}
    inner = found
    keys = path.split(".")
    for key in keys[:-1]:
        inner[key] = {}
        inner = inner[key]
    inner[keys[-1]] = value
    return found


async def latest_runs(
    conn: asyncpg.Connection,
    pipeline: str,
    *,
    before: int | None = None,
    state: str | None = None,
    payload: Mapping[str, Any] | None = None,
    limit: int = 25,
) -> RunPage:
    """Runs of `pipeline` whose entry message id is below `before` (the newest when None)."""
    if state is not None and state not in STATES:
        raise UsageError(f"unknown run state '{state}' (states: {', '.join(STATES)})")
    applied = await applied_pipeline(conn, pipeline)
    entry = applied.queue_name(applied.entry_step)
    high = before if before is not None else await conn.fetchval(query("last_msg_id"), entry) + 1
    wanted = dict(payload) if payload else None
    floor = max(1, high - SCAN_BUDGET)
    queues = [s.queue for s in applied.steps]
    found: list[RunRow] = []
    while high > floor and len(found) <= limit:
        low = max(floor, high - WINDOW)
        rows = await conn.fetch(
            query("runs_window"),
            entry,
            low,
            high,
            wanted,
            limit + 1,
            state,
            queues,
            applied.dead_letter_queue,
        )
        found += await _with_states(conn, applied, rows)
        high = low if len(rows) <= limit else rows[-1]["msg_id"]
    page = found[:limit]
    if len(found) > limit:
        next_before: int | None = page[-1].msg_id
    else:
        next_before = high if high > 1 else None
    return RunPage(tuple(page), next_before, high)


async def _with_states(
    conn: asyncpg.Connection, pipeline: AppliedPipeline, rows: Sequence[asyncpg.Record]
) -> list[RunRow]:
    ids = [r["run_id"] for r in rows if r["run_id"]]
    counts = {
        r["run_id"]: (r["pending"], r["dead"])
        for r in await conn.fetch(
            query("run_states"),
            [s.queue for s in pipeline.steps],
            pipeline.dead_letter_queue,
            ids,
        )
    }
    return [
        RunRow(
            run_id=r["run_id"] or "?",
            pipeline=pipeline.name,
            msg_id=r["msg_id"],
            started=r["enqueued_at"],
            payload=r["message"],
            state=_state(r["place"], counts.get(r["run_id"], (0, 0))),
        )
        for r in rows
    ]


def _state(place: str, counts: tuple[int, int]) -> str:
    pending, dead = counts
    if place == "queue" or pending:
        return "running"
    return "dead-lettered" if dead else "done"
