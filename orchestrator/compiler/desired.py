"""The database state a set of pipelines asks for: queues, their storage, joins, metadata rows.

Everything is derived from a pipeline's canonical JSON (`Pipeline.to_json`), the same document
`apply` stores in ``orchestrator.pipelines.spec``. So the state a pipeline file asks for now
and the state recorded when it was last applied come out of one function, `pipeline_state`,
and compare field by field.

Storage per queue (all queues of a pipeline share its ``queues`` settings):

- partitioning: time ranges of ``interval`` seconds, partitions dropped after ``retention``
  (None keeps them; the queue layer needs a value, so it gets `KEEP_FOREVER`);
- ``unlogged``: the queue table (not its archive) is UNLOGGED;
- insert notifications: a throttle in milliseconds, or None when they are off.

Each queue also carries an index on ``headers->>'run_id'``: step queues on their archive, the
dead-letter queue on both tables (`QueueState.run_id_tables`). The queue of a step with
``group_by`` carries the queue layer's FIFO group index (`pgmq.create_fifo_index`), which keeps
its grouped reads cheap at any depth (`QueueState.group_by`).

A pipeline's ``subscribe`` patterns are topic bindings of its entry step's queue
(`PipelineState.bindings`, made with `pgmq.bind_topic`); the recorded spec says which bindings
apply made, so only those are ever removed.

Archive settings (archive or delete acknowledged messages, and how long archived messages are
kept) have no place in the queue layer for queues that are not partitioned: they live in the
stored spec (``spec["queues"]["archive"]``), where maintenance reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.compiler.render import UnsafeName, check_queue_name
from orchestrator.errors import ConfigError
from orchestrator.spec import Pipeline, naming
from orchestrator.spec.durations import MAX_DURATION, format_duration
from orchestrator.spec.models import SPEC_FORMAT
from orchestrator.spec.topics import topic_pattern_problem

KEEP_FOREVER = "100 years"
"""Partition retention given to the queue layer when a pipeline keeps its partitions."""

KEEP_THRESHOLD = 2 * MAX_DURATION
"""A retention (seconds) at least this long reads back as "keep" (no retention)."""

MIN_PARTITION_INTERVAL = 60.0
"""Shortest partition range the queue layer accepts (partition names have minute resolution)."""

MAX_NOTIFY_THROTTLE_MS = 2**31 - 1
"""Longest notification throttle the queue layer accepts (an integer of milliseconds)."""


@dataclass(frozen=True)
class PartitionLayout:
    """How a queue is partitioned: ``by`` 'time' (seconds), 'msg_id' (messages) or 'months'."""

    by: str
    interval: float
    retention: float | None

    @property
    def interval_text(self) -> str:
        """The interval as `pgmq.create_partitioned` takes it."""
        if self.by == "msg_id":
            return str(int(self.interval))
        return interval_text(self.interval)

    @property
    def retention_text(self) -> str:
        """The retention as `pgmq.create_partitioned` takes it."""
        if self.by == "msg_id":
            return str(int(self.retention or 0))
        return KEEP_FOREVER if self.retention is None else interval_text(self.retention)

    def describe(self) -> str:
        """``partitioned by 1d, keep 7d``."""
        return f"partitioned by {self.describe_interval()}, {self.describe_retention()}"

    def describe_interval(self) -> str:
        """The partition range in words."""
        if self.by == "msg_id":
            return f"{int(self.interval)} messages"
        if self.by == "months":
            return f"{int(self.interval)} months"
        return format_duration(self.interval)

    def describe_retention(self) -> str:
        """The retention in words: ``keep 7d`` or ``keep forever``."""
        if self.retention is None:
            return "keep forever"
        if self.by == "msg_id":
            return f"keep {int(self.retention)} messages"
        return f"keep {format_duration(self.retention)}"


@dataclass(frozen=True)
class Storage:
    """Storage of one queue: partitioning, persistence, insert notifications."""

    partition: PartitionLayout | None = None
    unlogged: bool = False
    notify_ms: int | None = None

    def describe(self) -> str:
        """Settings in words, e.g. ``partitioned by 1d, keep 7d; notify every 250ms``."""
        parts = []
        if self.partition is not None:
            parts.append(self.partition.describe())
        if self.unlogged:
            parts.append("unlogged")
        parts.append(describe_notify(self.notify_ms))
        return "; ".join(parts)


@dataclass(frozen=True)
class QueueState:
    """A queue a pipeline needs; ``step`` is None for the dead-letter queue."""

    name: str
    pipeline: str
    step: str | None
    storage: Storage
    group_by: str | None = None
    """The step's ``group_by`` key path: its queue carries the FIFO group index."""

    @property
    def run_id_tables(self) -> tuple[str, ...]:
        """Tables (``q`` queue, ``a`` archive) indexed on ``headers->>'run_id'``.

        A step queue's archive is the history of its runs; the dead-letter queue is searched
        by run in both tables (waiting dead letters and replayed or deleted ones).
        """
        return ("a",) if self.step is not None else ("q", "a")


@dataclass(frozen=True)
class ArchiveState:
    """Archive acknowledged messages (else delete them), keeping them ``retention`` seconds."""

    enabled: bool = True
    retention: float | None = None

    def describe(self) -> str:
        """``archive, keep 30d`` / ``archive, keep forever`` / ``delete acknowledged messages``."""
        if not self.enabled:
            return "delete acknowledged messages"
        keep = "forever" if self.retention is None else format_duration(self.retention)
        return f"archive, keep {keep}"


@dataclass(frozen=True)
class JoinStep:
    """A join step and the predecessors whose outputs it waits for."""

    pipeline: str
    step: str
    expected: tuple[str, ...]


@dataclass(frozen=True)
class TopicBinding:
    """A topic pattern bound to the entry queue of the pipeline subscribing to it."""

    pattern: str
    queue: str
    pipeline: str

    @property
    def key(self) -> tuple[str, str]:
        """(pattern, queue): how the queue layer identifies the binding."""
        return (self.pattern, self.queue)


@dataclass(frozen=True)
class PipelineState:
    """Everything one pipeline needs in the database, plus the row that records it."""

    name: str
    spec: Mapping[str, Any]
    spec_hash: str
    entry_step: str
    queues: tuple[QueueState, ...]
    archive: ArchiveState
    joins: tuple[JoinStep, ...]
    renames: tuple[tuple[str, str], ...] = ()
    """(former name, step) of each step declaring `renamed_from`."""
    bindings: tuple[TopicBinding, ...] = ()
    """The `subscribe` patterns, bound to the entry step's queue."""

    @property
    def step_count(self) -> int:
        """Number of steps."""
        return sum(1 for q in self.queues if q.step is not None)


@dataclass(frozen=True)
class DesiredState:
    """The pipelines to apply, by name, in the order they were given."""

    pipelines: Mapping[str, PipelineState]

    @property
    def queues(self) -> dict[str, QueueState]:
        """Every queue of every pipeline, by name."""
        return {q.name: q for p in self.pipelines.values() for q in p.queues}

    @property
    def joins(self) -> dict[tuple[str, str], JoinStep]:
        """Every join step, by (pipeline, step)."""
        return {(j.pipeline, j.step): j for p in self.pipelines.values() for j in p.joins}

    @property
    def bindings(self) -> dict[tuple[str, str], TopicBinding]:
        """Every topic binding, by (pattern, queue)."""
        return {b.key: b for p in self.pipelines.values() for b in p.bindings}


def desired_state(pipelines: Iterable[Pipeline]) -> DesiredState:
    """The state `pipelines` ask for; raises `ConfigError` for storage the database refuses.

    Every name is checked here, before any SQL runs: a model built around validation (say
    with ``model_copy(update=...)``) raises `UnsafeName` instead of reaching a template.
    """
    states: dict[str, PipelineState] = {}
    problems: list[str] = []
    for pipeline in pipelines:
        problems.extend(storage_problems(pipeline))
        state = pipeline_state(pipeline.to_json(), pipeline.spec_hash())
        check_names(state)
        states[pipeline.name] = state
    if problems:
        raise ConfigError("; ".join(problems))
    return DesiredState(states)


def check_names(state: PipelineState) -> None:
    """Raise `UnsafeName` unless every pipeline, step and queue name follows the rules."""
    steps = [q.step for q in state.queues if q.step is not None]
    former = [old for old, _ in state.renames]
    for name in (state.name, state.entry_step, *steps, *former):
        if not naming.is_valid_name(name):
            raise UnsafeName(f"refusing to use {name!r} as a pipeline or step name")
    for queue in state.queues:
        check_queue_name(queue.name)
    for binding in state.bindings:
        problem = topic_pattern_problem(binding.pattern)
        if problem:
            raise UnsafeName(f"refusing to bind {binding.pattern!r}: {problem}")


def storage_problems(pipeline: Pipeline) -> list[str]:
    """Queue settings of `pipeline` that the queue layer cannot honour."""
    queues = pipeline.queues
    problems = []
    if queues.partitioned is not None and queues.unlogged:
        problems.append(
            f"pipeline {pipeline.name}: queues.unlogged cannot be combined with "
            "queues.partitioned (PostgreSQL has no unlogged partitioned tables)"
        )
    if queues.partitioned is not None and queues.partitioned.interval < MIN_PARTITION_INTERVAL:
        problems.append(
            f"pipeline {pipeline.name}: queues.partitioned.interval must be at least 1m "
            f"(got {format_duration(queues.partitioned.interval)})"
        )
    if queues.notify.enabled and queues.notify.throttle * 1000 > MAX_NOTIFY_THROTTLE_MS:
        problems.append(
            f"pipeline {pipeline.name}: queues.notify.throttle must be at most 24d20h31m23s "
            f"(got {format_duration(queues.notify.throttle)})"
        )
    return problems


def pipeline_state(spec: Mapping[str, Any], spec_hash: str) -> PipelineState:
    """The state described by a pipeline's canonical JSON (`Pipeline.to_json`)."""
    if spec.get("format") != SPEC_FORMAT:
        raise ConfigError(
            f"pipeline {spec.get('pipeline')!r} was applied with spec format "
            f"{spec.get('format')!r}; this orchestrator reads format {SPEC_FORMAT}"
        )
    try:
        return _pipeline_state(spec, spec_hash)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"the stored spec of pipeline {spec.get('pipeline')!r} is not readable ({exc!r})"
        ) from None


def _pipeline_state(spec: Mapping[str, Any], spec_hash: str) -> PipelineState:
    name = str(spec["pipeline"])
    storage = storage_from_json(spec["queues"])
    steps: Mapping[str, Mapping[str, Any]] = spec["steps"]
    queues = [
        QueueState(str(s["queue"]), name, step, storage, s.get("group_by") or None)
        for step, s in steps.items()
    ]
    queues.append(QueueState(str(spec["dead_letter_queue"]), name, None, storage))
    joins = [
        JoinStep(name, step, tuple(s["predecessors"]))
        for step, s in steps.items()
        if len(s["predecessors"]) > 1
    ]
    entry_queue = str(steps[str(spec["entry_step"])]["queue"])
    return PipelineState(
        name=name,
        spec=spec,
        spec_hash=spec_hash,
        entry_step=str(spec["entry_step"]),
        queues=tuple(queues),
        archive=archive_from_json(spec["queues"]),
        joins=tuple(joins),
        renames=tuple(
            (str(s["renamed_from"]), step) for step, s in steps.items() if s.get("renamed_from")
        ),
        bindings=tuple(
            TopicBinding(str(pattern), entry_queue, name) for pattern in spec.get("subscribe", ())
        ),
    )


def storage_from_json(queues: Mapping[str, Any]) -> Storage:
    """Queue storage from the ``queues`` section of a canonical spec."""
    partitioned = queues.get("partitioned")
    partition = None
    if partitioned is not None:
        retention = partitioned.get("retention")
        partition = PartitionLayout(
            "time", float(partitioned["interval"]), None if retention is None else float(retention)
        )
    notify = queues.get("notify") or {}
    notify_ms = round(float(notify["throttle"]) * 1000) if notify.get("enabled", True) else None
    return Storage(partition, bool(queues.get("unlogged", False)), notify_ms)


def archive_from_json(queues: Mapping[str, Any]) -> ArchiveState:
    """Archive settings from the ``queues`` section of a canonical spec."""
    archive = queues.get("archive") or {}
    retention = archive.get("retention")
    return ArchiveState(
        bool(archive.get("enabled", True)), None if retention is None else float(retention)
    )


def interval_text(seconds: float) -> str:
    """A PostgreSQL interval for `seconds`, in the largest whole unit: ``'7 days'``."""
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    if seconds == int(seconds):
        return f"{int(seconds)} seconds"
    return f"{seconds:.6f}".rstrip("0") + " seconds"


def describe_notify(notify_ms: int | None) -> str:
    """Insert notifications in words."""
    if notify_ms is None:
        return "no notifications"
    if notify_ms == 0:
        return "notify on every insert"
    return f"notify every {format_duration(notify_ms / 1000)}"
