"""Applied pipelines: the rows of `orchestrator.pipelines`, read from the database, not YAML.

`apply` stores each pipeline's canonical JSON (`Pipeline.to_json`), so status, traces, dead
letters and maintenance work on any host that can reach the database, with or without the
pipeline files. `AppliedRecord` is the row as stored (what `plan` compares and `run` checks);
`AppliedPipeline` is the read model operations need from its document.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from orchestrator.db.named_sql import named_queries
from orchestrator.errors import ConfigError, NotFound
from orchestrator.spec import Schedule
from orchestrator.spec.models import JOIN_INCOMPLETE_RETENTION, SPEC_FORMAT
from orchestrator.spec.suggest import did_you_mean
from orchestrator.state.layers import ensure_prepared

_Q = named_queries("orchestrator.state")


@dataclass(frozen=True)
class AppliedRecord:
    """A row of ``orchestrator.pipelines``: what `apply` recorded for a pipeline, as stored."""

    name: str
    spec: Mapping[str, Any]
    spec_hash: str
    entry_step: str
    applied_at: datetime


async def read_applied_records(
    conn: asyncpg.Connection, names: Sequence[str] | None = None
) -> dict[str, AppliedRecord]:
    """Rows of ``orchestrator.pipelines`` by pipeline name, all or those in `names`; the caller
    checks first that the table exists."""
    rows = await conn.fetch(_Q["applied_pipelines"], list(names) if names else None)
    return {
        row["name"]: AppliedRecord(
            name=row["name"],
            spec=row["spec"],
            spec_hash=row["spec_hash"],
            entry_step=row["entry_step"],
            applied_at=row["applied_at"],
        )
        for row in rows
    }


@dataclass(frozen=True)
class AppliedStep:
    """One step of an applied pipeline: its queue and the settings operations look at."""

    name: str
    queue: str
    visibility_timeout: float
    delay: float
    description: str | None
    predecessors: tuple[str, ...]
    successors: tuple[str, ...]
    publish: tuple[str, ...] = ()
    """Routing keys the step's output is also published with."""


@dataclass(frozen=True)
class AppliedPipeline:
    """What `apply` recorded for one pipeline. `steps` are in topological order."""

    name: str
    spec_hash: str
    applied_at: datetime
    entry_step: str
    dead_letter_queue: str
    steps: tuple[AppliedStep, ...]
    archive_enabled: bool
    archive_retention: float | None
    partitioned: bool
    schedules: tuple[Schedule, ...]
    description: str | None = None
    join_incomplete_retention: float = JOIN_INCOMPLETE_RETENTION
    """Seconds an incomplete join row is kept (`joins.incomplete_retention`)."""
    subscriptions: tuple[str, ...] = ()
    """Topic patterns bound to the entry step's queue (`subscribe`)."""

    @property
    def published(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(step, its routing keys) of every step that publishes, in step order."""
        return tuple((s.name, s.publish) for s in self.steps if s.publish)

    @property
    def join_steps(self) -> tuple[str, ...]:
        """Steps with several predecessors, in topological order."""
        return tuple(s.name for s in self.steps if len(s.predecessors) > 1)

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    def step(self, name: str) -> AppliedStep:
        """Step `name`; `NotFound` (with a suggestion) when the pipeline has no such step."""
        for step in self.steps:
            if step.name == name:
                return step
        raise NotFound(
            f"pipeline '{self.name}' has no step '{name}'"
            f"{did_you_mean(name, self.step_names)} (steps: {', '.join(self.step_names)})"
        )

    def queue_name(self, step: str) -> str:
        """Queue of step `step`."""
        return self.step(step).queue

    def queue_names(self) -> tuple[str, ...]:
        """Step queues in topological order, then the dead-letter queue."""
        return (*(s.queue for s in self.steps), self.dead_letter_queue)


def from_spec(spec: Mapping[str, Any], spec_hash: str, applied_at: datetime) -> AppliedPipeline:
    """Read model of a canonical pipeline document; `ConfigError` when it is not readable."""
    if spec.get("format") != SPEC_FORMAT:
        raise ConfigError(
            f"pipeline {spec.get('pipeline')!r} was applied with spec format "
            f"{spec.get('format')!r}; this orchestrator reads format {SPEC_FORMAT} "
            "(run `orchestrator apply` with this version)"
        )
    try:
        return _from_spec(spec, spec_hash, applied_at)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"the stored spec of pipeline {spec.get('pipeline')!r} is not readable ({exc!r})"
        ) from None


def _from_spec(spec: Mapping[str, Any], spec_hash: str, applied_at: datetime) -> AppliedPipeline:
    steps = {name: _step(name, s) for name, s in spec["steps"].items()}
    queues = spec.get("queues") or {}
    archive = queues.get("archive") or {}
    retention = archive.get("retention")
    joins = spec.get("joins") or {}
    return AppliedPipeline(
        name=str(spec["pipeline"]),
        spec_hash=spec_hash,
        applied_at=applied_at,
        entry_step=str(spec["entry_step"]),
        dead_letter_queue=str(spec["dead_letter_queue"]),
        steps=tuple(steps[n] for n in _order(str(spec["entry_step"]), steps)),
        archive_enabled=bool(archive.get("enabled", True)),
        archive_retention=None if retention is None else float(retention),
        partitioned=queues.get("partitioned") is not None,
        schedules=tuple(Schedule.model_validate(s) for s in spec.get("schedules") or ()),
        description=spec.get("description"),
        join_incomplete_retention=float(
            joins.get("incomplete_retention", JOIN_INCOMPLETE_RETENTION)
        ),
        subscriptions=tuple(str(p) for p in spec.get("subscribe") or ()),
    )


def _step(name: str, spec: Mapping[str, Any]) -> AppliedStep:
    return AppliedStep(
        name=name,
        queue=str(spec["queue"]),
        visibility_timeout=float(spec["visibility_timeout"]),
        delay=float(spec.get("delay") or 0.0),
        description=spec.get("description"),
        predecessors=tuple(spec.get("predecessors") or ()),
        successors=tuple(spec.get("successors") or ()),
        publish=tuple(str(k) for k in spec.get("publish") or ()),
    )


def _order(entry: str, steps: Mapping[str, AppliedStep]) -> list[str]:
    """Topological order from the entry step; a step comes once all its predecessors came.

    The stored document keeps each step's neighbours in file order, so walking successors
    breadth-first reproduces the file's order for the usual shapes. Steps the walk cannot
    reach (never in a valid spec) are appended by name.
    """
    order: list[str] = []
    waiting = {name: len(step.predecessors) for name, step in steps.items()}
    ready = deque([entry] if entry in steps else [])
    while ready:
        name = ready.popleft()
        order.append(name)
        for successor in steps[name].successors:
            if successor in waiting:
                waiting[successor] -= 1
                if waiting[successor] == 0:
                    ready.append(successor)
    return order + sorted(set(steps) - set(order))


async def applied_pipelines(
    conn: asyncpg.Connection, names: Sequence[str] | None = None
) -> list[AppliedPipeline]:
    """Applied pipelines by name (all when `names` is None or empty).

    Raises `SchemaMissing` when the database has no pipelines schema and `NotFound` for a name
    that was never applied.
    """
    await ensure_prepared(conn)
    wanted = list(dict.fromkeys(names)) if names else None
    records = await read_applied_records(conn, wanted)
    found = [from_spec(r.spec, r.spec_hash, r.applied_at) for r in records.values()]
    if wanted:
        known = {p.name for p in found}
        missing = [n for n in wanted if n not in known]
        if missing:
            raise await _unknown(conn, missing[0])
    return found


async def applied_pipeline(conn: asyncpg.Connection, name: str) -> AppliedPipeline:
    """One applied pipeline; `NotFound` when it was never applied."""
    return (await applied_pipelines(conn, [name]))[0]


async def _unknown(conn: asyncpg.Connection, name: str) -> NotFound:
    applied = [str(r["name"]) for r in await conn.fetch(_Q["pipeline_names"])]
    listing = f"applied: {', '.join(applied)}" if applied else "none is applied yet"
    return NotFound(f"unknown pipeline '{name}'{did_you_mean(name, applied)} ({listing})")
