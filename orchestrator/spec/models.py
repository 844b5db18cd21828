"""Typed pipeline models: what a pipeline file says, and the effective settings derived from it.

The models mirror the YAML one to one (strict: unknown keys are errors) and are frozen. All
durations are ``float`` seconds. A step's settings left out inherit from ``defaults``, and
``retry`` merges key by key (step, then ``defaults.retry``, then the built-in policy), so
`Pipeline.step` returns a `ResolvedStep` with every value filled in.

A `Pipeline` instance is always valid as a whole: its graph has one entry step, no cycle and
no unreachable or unknown step, and its derived queue names fit the queue layer. Validation
problems that point at a specific place are raised as `InvalidPipeline` (a ValueError, so it
surfaces inside pydantic's ValidationError with its issues in ``ctx["error"]``).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Annotated, Any, Literal, Self, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    Strict,
    WithJsonSchema,
    model_validator,
)

from orchestrator.spec import cron, naming
from orchestrator.spec.diagnostics import InvalidPipeline
from orchestrator.spec.durations import parse_duration, parse_positive_duration
from orchestrator.spec.flow import (
    GROUP_KEY_HINT,
    GROUP_KEY_PATTERN,
    RATE_HINT,
    RATE_PATTERN,
    burst_of,
    check_group_key,
    parse_rate,
)
from orchestrator.spec.graph import StepLinks, Topology, analyze
from orchestrator.spec.handlers import HANDLER_HINT, HANDLER_PATTERN
from orchestrator.spec.topics import (
    MAX_TOPIC_LENGTH,
    ROUTING_KEY_HINT,
    ROUTING_KEY_PATTERN,
    TOPIC_PATTERN_HINT,
    TOPIC_PATTERN_PATTERN,
    check_routing_key,
    check_topic_pattern,
)

SPEC_FORMAT = 1
"""Version of the canonical JSON produced by `Pipeline.to_json` (part of the spec hash)."""

DURATION_SCHEMA_KEY = "x-orchestrator-duration"
"""Placeholder in generated schemas, replaced by a ``$ref`` to the shared duration definition."""


def _check_name(value: str) -> str:
    problem = naming.name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


_HANDLER = re.compile(HANDLER_PATTERN)
_T = TypeVar("_T")


def _check_handler(value: str) -> str:
    if not _HANDLER.match(value):
        raise ValueError(f"malformed handler '{value}'; {HANDLER_HINT}")
    return value


def _check_cron(value: str) -> str:
    problem = cron.problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone '{value}'; use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None
    return value


def _check_rate(value: str) -> str:
    parse_rate(value)
    return value


def _one_or_many(value: object) -> object:
    """Accept a single item where a list is expected."""
    return [value] if isinstance(value, str | dict) else value


def _whole_number(value: object) -> object:
    """``4.0`` is accepted as ``4`` (JSON Schema counts it as an integer too)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _enabled_flag(value: object) -> object:
    """``true``/``false`` as shorthand for ``{enabled: true|false}``."""
    return {"enabled": value} if isinstance(value, bool) else value


def _rate_shorthand(value: object) -> object:
    """``20/s`` as shorthand for ``{rate: 20/s}`` (a bucket of the step's own)."""
    if not isinstance(value, str):
        return value
    parse_rate(value)  # reported at the value as written, not at the key of the shorthand
    return {"rate": value}


Text = Annotated[str, Strict()]
Name = Annotated[
    str,
    Strict(),
    AfterValidator(_check_name),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": naming.NAME_PATTERN,
            "patternErrorMessage": f"use {naming.NAME_RULE}",
        }
    ),
]
HandlerRef = Annotated[
    str,
    Strict(),
    AfterValidator(_check_handler),
    WithJsonSchema(
        {"type": "string", "pattern": HANDLER_PATTERN, "patternErrorMessage": HANDLER_HINT}
    ),
]
CronText = Annotated[str, Strict(), AfterValidator(_check_cron)]
TimeZoneName = Annotated[str, Strict(), AfterValidator(_check_timezone)]
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({DURATION_SCHEMA_KEY: "Duration"}),
]
PositiveDuration = Annotated[
    float,
    BeforeValidator(parse_positive_duration),
    WithJsonSchema({DURATION_SCHEMA_KEY: "PositiveDuration"}),
]
Count = Annotated[int, Strict(), Field(ge=1, le=1000), BeforeValidator(_whole_number)]
Flag = Annotated[bool, Strict()]
Slots = Annotated[int, Strict(), Field(ge=1, le=100_000), BeforeValidator(_whole_number)]
Depth = Annotated[int, Strict(), Field(ge=1, le=100_000_000), BeforeValidator(_whole_number)]
RateText = Annotated[
    str,
    Strict(),
    AfterValidator(_check_rate),
    WithJsonSchema({"type": "string", "pattern": RATE_PATTERN, "patternErrorMessage": RATE_HINT}),
]
GroupKey = Annotated[
    str,
    Strict(),
    AfterValidator(check_group_key),
    WithJsonSchema(
        {"type": "string", "pattern": GROUP_KEY_PATTERN, "patternErrorMessage": GROUP_KEY_HINT}
    ),
]
RoutingKey = Annotated[
    str,
    Strict(),
    AfterValidator(check_routing_key),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": ROUTING_KEY_PATTERN,
            "maxLength": MAX_TOPIC_LENGTH,
            "patternErrorMessage": ROUTING_KEY_HINT,
        }
    ),
]
TopicPattern = Annotated[
    str,
    Strict(),
    AfterValidator(check_topic_pattern),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": TOPIC_PATTERN_PATTERN,
            "maxLength": MAX_TOPIC_LENGTH,
            "patternErrorMessage": TOPIC_PATTERN_HINT,
        }
    ),
]
RoutingKeys = Annotated[
    tuple[RoutingKey, ...],
    BeforeValidator(_one_or_many, json_schema_input_type=RoutingKey | list[RoutingKey]),
]
TopicPatterns = Annotated[
    tuple[TopicPattern, ...],
    BeforeValidator(_one_or_many, json_schema_input_type=TopicPattern | list[TopicPattern]),
]
StepRefs = Annotated[
    tuple[Text, ...],
    BeforeValidator(_one_or_many, json_schema_input_type=Text | list[Text]),
]
Backoff = Literal["constant", "linear", "exponential"]
Contract = Annotated[
    HandlerRef | dict[str, JsonValue],
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": HANDLER_PATTERN,
                    "patternErrorMessage": "a model is written as 'package.module:Model'",
                },
                {"type": "object"},
            ],
            "errorMessage": "expected a JSON Schema (a mapping, or {$ref: file.json}) "
            "or a pydantic model as 'package.module:Model'",
        }
    ),
]
"""A payload contract: a JSON Schema (inline; a top-level ``$ref`` to a file is inlined when the
file is loaded) or the path of a pydantic model."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class RetrySettings(_Model):
    """Retry policy as written; keys left out inherit (step, then defaults.retry, then built-in)."""

    max_attempts: Count | None = None
    """Attempts in total, the first included (1 = never retry). Built-in default: 3."""
    backoff: Backoff | None = None
    """Growth of the wait between attempts: constant (always `initial`), linear (initial x
    attempt) or exponential (initial x 2^(attempt-1)); capped at `max`. Built-in: exponential."""
    initial: Duration | None = None
    """Wait before the first retry. Built-in default: 1s."""
    max: Duration | None = None
    """Longest wait between two attempts. Built-in default: 5m."""
    jitter: Flag | None = None
    """Randomise each wait so retries of many messages spread out. Built-in default: true."""


class RetryPolicy(_Model):
    """A step's effective retry policy (every value resolved; durations in seconds)."""

    max_attempts: int = 3
    backoff: Backoff = "exponential"
    initial: float = 1.0
    max: float = 300.0
    jitter: bool = True

    def merged(self, override: RetrySettings | None) -> RetryPolicy:
        """This policy with the keys set in `override` replaced."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class RateLimit(_Model):
    """Handler starts per unit of time, all workers together; steps naming the same bucket
    share it (one external system, several steps or pipelines)."""

    rate: RateText
    """Starts allowed: N/s, N/min or N/h. Bursts reach the per-second figure at most."""
    name: Name | None = None
    """Bucket shared by every step (of any pipeline) that names it. Default: the step's own."""

    @property
    def per_second(self) -> float:
        """The rate in starts per second."""
        return parse_rate(self.rate)

    @property
    def burst(self) -> int:
        """Tokens a rested bucket holds."""
        return burst_of(self.per_second)

    def bucket(self, pipeline: str, step: str) -> str:
        """Name of the bucket in the database: the shared name, else '<pipeline>.<step>'."""
        return self.name if self.name is not None else f"{pipeline}.{step}"


RateLimitSetting = Annotated[
    RateLimit,
    BeforeValidator(_rate_shorthand, json_schema_input_type=RateText | RateLimit),
]

FLOW_KEYS = ("rate_limit", "max_in_flight", "group_by", "max_waiting")
"""Step keys of flow control; left out of a step's canonical JSON while unset."""


class Defaults(_Model):
    """Settings applied to every step that does not set them itself."""

    visibility_timeout: PositiveDuration = 60.0
    """How long a delivered message stays invisible to other workers; when it runs out before
    the step is done (and the lease was not extended) the message is delivered again."""
    timeout: PositiveDuration = 30.0
    """Time limit of one handler call; must be shorter than visibility_timeout."""
    delay: Duration = 0.0
    """Messages become visible this long after they are handed to the step."""
    concurrency: Count = 1
    """Handler calls of one step running at the same time, per worker process."""
    batch_size: Count = 1
    """Messages read and handed off together in one transaction."""
    retry: RetrySettings = RetrySettings()
    """Retry policy of every step; a step's own `retry` overrides it key by key."""
    rate_limit: RateLimitSetting | None = None
    """Handler starts per unit of time of every step (each its own bucket unless named)."""
    max_in_flight: Slots | None = None
    """Handler calls of each step at once, all workers together."""
    max_waiting: Depth | None = None
    """Backpressure for every step with predecessors (see the step key)."""


class StepSettings(_Model):
    """Effective settings of a step (defaults merged in); durations in seconds."""

    visibility_timeout: float
    timeout: float
    delay: float
    concurrency: int
    batch_size: int
    retry: RetryPolicy
    rate_limit: RateLimit | None = None
    max_in_flight: int | None = None
    group_by: str | None = None
    max_waiting: int | None = None


class Step(_Model):
    """One step: a handler, the steps that follow it, and settings overriding the defaults."""

    handler: HandlerRef
    """Python function processing one message, as 'package.module:function'. An async
    function takes (payload, ctx); a plain one takes (payload) or (payload, ctx)."""
    description: Text | None = None
    """What the step does, for people and for `orchestrator status`."""
    next: StepRefs = ()
    """Steps that receive this step's output (several = fan-out: each gets a copy)."""
    after: StepRefs = ()
    """Steps that must finish first; with several, this step is a join and runs once per run
    when all have finished, receiving {step name: output} of each predecessor."""
    visibility_timeout: PositiveDuration | None = None
    """Overrides defaults.visibility_timeout."""
    timeout: PositiveDuration | None = None
    """Overrides defaults.timeout; must be shorter than the visibility timeout."""
    delay: Duration | None = None
    """Overrides defaults.delay: messages become visible this long after the hand-off."""
    concurrency: Count | None = None
    """Overrides defaults.concurrency."""
    batch_size: Count | None = None
    """Overrides defaults.batch_size."""
    retry: RetrySettings | None = None
    """Overrides defaults.retry key by key (`{max_attempts: 5}` keeps the default backoff)."""
    input: Contract | None = None
    """What the step takes: a JSON Schema (inline or {$ref: file.json}, relative to the
    pipeline file) or a pydantic model 'package.module:Model'. Default: the output of its
    single predecessor; for a join, the object of its predecessors' outputs."""
    output: Contract | None = None
    """What the step gives: a JSON Schema or a pydantic model, like `input`. A handler output
    that breaks it fails its message permanently."""
    renamed_from: Name | None = None
    """The step's former name: apply moves the old queue's messages, archive, dead letters and
    join rows to this step."""
    rate_limit: RateLimitSetting | None = None
    """Handler starts per unit of time, all workers together: '20/s', '100/min', '5/h', or
    {name: sap, rate: 20/s} to share one bucket with every step naming it."""
    max_in_flight: Slots | None = None
    """Handler calls of this step at once, all workers together."""
    group_by: GroupKey | None = None
    """Payload key (dotted path allowed): messages of one group run one at a time in the order
    they were sent (FIFO per group); other groups go on in parallel. A retrying message holds
    its group."""
    max_waiting: Depth | None = None
    """Backpressure: while this step's queue holds more visible messages than this, its
    predecessors do not hand off to it (they wait; nothing is dropped)."""
    publish: RoutingKeys = ()
    """Routing keys (one, or a list) this step's output is also published with, in the same
    transaction as its hand-off: every queue bound by a matching pattern (a pipeline's
    `subscribe`) gets a copy, and starts a run there. Words separated by dots, e.g.
    orders.created."""

    def settings(self, defaults: Defaults) -> StepSettings:
        """This step's effective settings given the pipeline's `defaults`."""
        return StepSettings(
            visibility_timeout=_pick(self.visibility_timeout, defaults.visibility_timeout),
            timeout=_pick(self.timeout, defaults.timeout),
            delay=_pick(self.delay, defaults.delay),
            concurrency=_pick(self.concurrency, defaults.concurrency),
            batch_size=_pick(self.batch_size, defaults.batch_size),
            retry=RetryPolicy().merged(defaults.retry).merged(self.retry),
            rate_limit=_pick(self.rate_limit, defaults.rate_limit),
            max_in_flight=_pick(self.max_in_flight, defaults.max_in_flight),
            group_by=self.group_by,
            max_waiting=_pick(self.max_waiting, defaults.max_waiting),
        )


def _step_json(step: ResolvedStep) -> dict[str, Any]:
    """A resolved step's canonical JSON; flow keys, contracts and renames appear only when
    set, so pipelines that set none keep the hash they had before those existed."""
    optional = (*FLOW_KEYS, "input", "output", "renamed_from")
    unset = {key for key in optional if getattr(step, key) is None}
    if not step.publish:
        unset.add("publish")
    return step.model_dump(mode="json", exclude={"pipeline", "name", *unset})


def _pick(own: _T | None, inherited: _T) -> _T:
    return inherited if own is None else own


class ResolvedStep(StepSettings):
    """A step with everything resolved: settings, queue and neighbours (in file order)."""

    pipeline: str
    name: str
    handler: str
    description: str | None
    queue: str
    predecessors: tuple[str, ...]
    successors: tuple[str, ...]
    input: str | dict[str, JsonValue] | None = None
    output: str | dict[str, JsonValue] | None = None
    renamed_from: str | None = None
    publish: tuple[str, ...] = ()
    """Routing keys the step's output is published with."""

    @property
    def is_entry(self) -> bool:
        """True for the pipeline's entry step (no predecessors)."""
        return not self.predecessors

    @property
    def is_join(self) -> bool:
        """True when the step waits for several predecessors (its payload maps their names)."""
        return len(self.predecessors) > 1

    @property
    def is_terminal(self) -> bool:
        """True when nothing follows the step."""
        return not self.successors


class Partitioning(_Model):
    """Store each queue in time-range partitions, dropped after `retention`."""

    interval: PositiveDuration
    """Time range covered by one partition (e.g. '1 day')."""
    retention: PositiveDuration | None = None
    """Partitions older than this are dropped; at least `interval`. Default: keep them."""


class ArchiveSettings(_Model):
    """Keep acknowledged messages in an archive table (`false`: delete them instead)."""

    enabled: Flag = True
    """Archive acknowledged messages; false deletes them."""
    retention: PositiveDuration | None = None
    """Archived messages older than this are deleted. Default: keep them."""


class NotifySettings(_Model):
    """Wake waiting workers with a notification when a message is inserted (`false`: poll)."""

    enabled: Flag = True
    """Send insert notifications."""
    throttle: Duration = 0.01
    """At most one notification per queue per this interval (default 10ms: a worker hears of
    each message at a steady rate of up to a hundred a second per queue, and a burst costs
    one notification per interval, not one per message)."""


class QueueSettings(_Model):
    """Storage of every queue of this pipeline (step queues and dead-letter queue)."""

    partitioned: Partitioning | None = None
    """Partition the queue tables by time. Default: not partitioned."""
    unlogged: Flag = False
    """Unlogged tables: faster, but messages are lost when PostgreSQL crashes."""
    archive: Annotated[
        ArchiveSettings,
        BeforeValidator(_enabled_flag, json_schema_input_type=Flag | ArchiveSettings),
    ] = ArchiveSettings()
    """Archive acknowledged messages (default), optionally with a retention; false deletes."""
    notify: Annotated[
        NotifySettings,
        BeforeValidator(_enabled_flag, json_schema_input_type=Flag | NotifySettings),
    ] = NotifySettings()
    """Insert notifications that wake workers (default on, throttled to one per 10ms)."""


JOIN_INCOMPLETE_RETENTION = 30 * 86400.0
"""Default seconds an incomplete join row is kept (`joins.incomplete_retention`)."""


class JoinSettings(_Model):
    """State of the join steps (steps with several predecessors) of this pipeline."""

    incomplete_retention: PositiveDuration = JOIN_INCOMPLETE_RETENTION
    """A run that waits at a join this long after its first predecessor arrived (another
    predecessor was dead-lettered, or the run was cancelled) loses its join row to
    `orchestrator maintain`. Default: 30 days."""


class Schedule(_Model):
    """Start a run of the pipeline on a cron schedule."""

    cron: CronText
    """Five-field cron expression (minute hour day-of-month month day-of-week), e.g.
    '*/5 * * * *' or '0 6 * * mon-fri'; @hourly, @daily, @weekly, @monthly also work."""
    payload: dict[str, JsonValue] = Field(default_factory=dict)
    """JSON object handed to the entry step at each tick. Default: {}."""
    catch_up: Duration = 0.0
    """Ticks missed while no scheduler ran are started when they are at most this old.
    Default 0: missed ticks are skipped."""
    timezone: TimeZoneName = "UTC"
    """IANA time zone the cron expression is read in (e.g. 'Europe/Berlin')."""
    name: Name | None = None
    """Identifies the schedule; needed when two schedules share a cron expression."""

    @property
    def key(self) -> str:
        """Stable identity of the schedule within its pipeline: its name, else its cron."""
        return self.name or self.cron

    def next_after(self, moment: datetime) -> datetime:
        """First tick strictly after the aware datetime `moment`, in the schedule's zone."""
        return cron.next_after(self.cron, moment.astimezone(ZoneInfo(self.timezone)))


class Pipeline(_Model):
    """A pipeline: steps connected by next/after, with shared defaults and queue storage."""

    name: Name = Field(alias="pipeline")
    """Name of the pipeline; step queues are named '<pipeline>__<step>'."""
    description: Text | None = None
    """What the pipeline does."""
    defaults: Defaults = Defaults()
    """Settings applied to every step unless the step overrides them."""
    queues: QueueSettings = QueueSettings()
    """Storage of this pipeline's queues."""
    dead_letter: Name | None = None
    """Queue receiving messages whose attempts are exhausted. Default: '<pipeline>_dlq'."""
    schedules: Annotated[
        tuple[Schedule, ...],
        BeforeValidator(_one_or_many, json_schema_input_type=Schedule | list[Schedule]),
    ] = Field(default=(), alias="schedule")
    """Start runs on a cron schedule: one schedule or a list of them."""
    join_settings: JoinSettings = Field(default=JoinSettings(), alias="joins")
    """State of the join steps: how long a run that never completes a join keeps its row."""
    dedupe_window: Duration = 0.0
    """How long after a keyed run finished a start with the same key still returns that run
    instead of starting a new one. Default 0: only while the run is not finished."""
    subscriptions: TopicPatterns = Field(default=(), alias="subscribe")
    """Topic patterns (one, or a list) bound to the entry step's queue: a step of any
    pipeline publishing a matching routing key starts a run of this one with its output. '*'
    stands for exactly one word, '#' for any number of words (orders.*, orders.#, #)."""
    steps: dict[Name, Step] = Field(min_length=1)
    """The steps, by name. Exactly one step has no predecessor: the entry step."""

    _topology: Topology = PrivateAttr()

    @model_validator(mode="after")
    def _check_whole(self) -> Self:
        from orchestrator.spec.rules import pipeline_issues

        report = analyze(self.step_links())
        issues = [*report.issues, *pipeline_issues(self)]
        if issues or report.topology is None:
            raise InvalidPipeline(issues)
        self._topology = report.topology
        return self

    def step_links(self) -> dict[str, StepLinks]:
        """The next/after references of every step, in file order."""
        return {name: StepLinks(s.next, s.after) for name, s in self.steps.items()}

    @property
    def entry_step(self) -> str:
        """Name of the step without predecessors, where every run starts."""
        return self._topology.entry

    @property
    def order(self) -> tuple[str, ...]:
        """Step names in topological order (entry first; ties in file order)."""
        return self._topology.order

    def predecessors(self, step: str) -> tuple[str, ...]:
        """Steps with an edge into `step`, in file order."""
        return self._topology.predecessors[self._known(step)]

    def successors(self, step: str) -> tuple[str, ...]:
        """Steps receiving `step`'s output, in file order."""
        return self._topology.successors[self._known(step)]

    def is_join(self, step: str) -> bool:
        """True when `step` has several predecessors."""
        return len(self.predecessors(step)) > 1

    @property
    def joins(self) -> tuple[str, ...]:
        """Join steps, in topological order."""
        return tuple(s for s in self.order if self.is_join(s))

    def queue_name(self, step: str) -> str:
        """Name of the queue feeding `step`: '<pipeline>__<step>'."""
        return naming.step_queue_name(self.name, self._known(step))

    @property
    def dead_letter_queue(self) -> str:
        """Name of the dead-letter queue: `dead_letter`, else '<pipeline>_dlq'."""
        return naming.dead_letter_queue_name(self.name, self.dead_letter)

    def queue_names(self) -> tuple[str, ...]:
        """Every queue of the pipeline: step queues in topological order, then the DLQ."""
        return (*(self.queue_name(s) for s in self.order), self.dead_letter_queue)

    def settings(self, step: str) -> StepSettings:
        """Effective settings of `step` (defaults merged)."""
        return self.steps[self._known(step)].settings(self.defaults)

    def step(self, name: str) -> ResolvedStep:
        """Everything about step `name`, resolved."""
        spec = self.steps[self._known(name)]
        return ResolvedStep(
            **spec.settings(self.defaults).model_dump(),
            pipeline=self.name,
            name=name,
            handler=spec.handler,
            description=spec.description,
            queue=self.queue_name(name),
            predecessors=self.predecessors(name),
            successors=self.successors(name),
            input=spec.input,
            output=spec.output,
            renamed_from=spec.renamed_from,
            publish=spec.publish,
        )

    def resolved_steps(self) -> tuple[ResolvedStep, ...]:
        """All steps resolved, in topological order."""
        return tuple(self.step(name) for name in self.order)

    def to_json(self) -> dict[str, Any]:
        """Canonical, JSON-ready form of the resolved pipeline (what the database stores).

        Defaults are merged into the steps, so moving a setting between `defaults` and a step
        without changing its effect leaves this (and `spec_hash`) unchanged.
        """
        canonical = {
            "format": SPEC_FORMAT,
            "pipeline": self.name,
            "description": self.description,
            "entry_step": self.entry_step,
            "dead_letter_queue": self.dead_letter_queue,
            "queues": self.queues.model_dump(mode="json"),
            "schedules": [s.model_dump(mode="json") for s in self.schedules],
            "steps": {s.name: _step_json(s) for s in self.resolved_steps()},
        }
        if self.dedupe_window:
            canonical["dedupe_window"] = self.dedupe_window
        if self.subscriptions:  # absent when empty: hashes stay the same
            canonical["subscribe"] = list(self.subscriptions)
        if self.join_settings != JoinSettings():  # absent at the default: hashes stay the same
            canonical["joins"] = self.join_settings.model_dump(mode="json")
        return canonical

    def spec_hash(self) -> str:
        """SHA-256 (hex) of `to_json` serialised with sorted keys: stable across formatting."""
        canonical = orjson.dumps(self.to_json(), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(canonical).hexdigest()

    def _known(self, step: str) -> str:
        if step not in self.steps:
            raise KeyError(f"pipeline '{self.name}' has no step '{step}'")
        return step
