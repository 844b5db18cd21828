"""Checks on a structurally valid pipeline that the schema cannot express.

Derived queue names must fit the queue layer; a handler's timeout must be shorter than its
visibility timeout; retry waits must not start above their cap; partitions must be kept at
least as long as they span; schedules need distinct keys; a routing key or a pattern is listed
once. Each issue points at the setting that causes it: the step's own value when it sets one,
else the value in ``defaults``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.spec import naming
from orchestrator.spec.diagnostics import DocPath, Issue
from orchestrator.spec.durations import format_duration

if TYPE_CHECKING:
    from orchestrator.spec.models import Pipeline


def pipeline_issues(pipeline: Pipeline) -> list[Issue]:
    """Every rule violation of `pipeline`, without duplicates."""
    issues = [
        *queue_name_issues(pipeline),
        *timeout_issues(pipeline),
        *retry_issues(pipeline),
        *partition_issues(pipeline),
        *notify_issues(pipeline),
        *schedule_issues(pipeline),
        *rename_issues(pipeline),
        *waiting_issues(pipeline),
        *shared_rate_issues(pipeline),
        *topic_issues(pipeline),
    ]
    return list(dict.fromkeys(issues))


def queue_name_issues(pipeline: Pipeline) -> list[Issue]:
    """Step and dead-letter queue names longer than the queue layer allows."""
    issues = []
    for step in pipeline.steps:
        problem = naming.queue_name_problem(naming.step_queue_name(pipeline.name, step))
        if problem:
            issues.append(
                Issue(("steps", step), f"{problem}; shorten the pipeline or step name", "key")
            )
    dlq = naming.dead_letter_queue_name(pipeline.name, pipeline.dead_letter)
    problem = naming.queue_name_problem(dlq)
    if problem:
        where: DocPath = ("dead_letter",) if pipeline.dead_letter else ("pipeline",)
        issues.append(Issue(where, f"dead-letter {problem}"))
    return issues


def timeout_issues(pipeline: Pipeline) -> list[Issue]:
    """Steps whose handler may still run when its message is delivered again."""
    issues = []
    for name, step in pipeline.steps.items():
        effective = step.settings(pipeline.defaults)
        if effective.timeout < effective.visibility_timeout:
            continue
        where = _located(pipeline, name, "timeout", "visibility_timeout")
        issues.append(
            Issue(
                where,
                f"timeout ({format_duration(effective.timeout)}) must be shorter than "
                f"visibility_timeout ({format_duration(effective.visibility_timeout)}), "
                "or a message is delivered again while its handler still runs",
            )
        )
    return issues


def retry_issues(pipeline: Pipeline) -> list[Issue]:
    """Retry policies whose first wait is longer than their longest wait."""
    issues = []
    for name, step in pipeline.steps.items():
        policy = step.settings(pipeline.defaults).retry
        if policy.initial <= policy.max:
            continue
        where = _located_retry(pipeline, name, "initial", "max")
        issues.append(
            Issue(
                where,
                f"retry.initial ({format_duration(policy.initial)}) is longer than "
                f"retry.max ({format_duration(policy.max)})",
            )
        )
    return issues


MIN_PARTITION_INTERVAL = 60.0
"""Shortest partition range the queue layer accepts (partition names have minute resolution)."""

MAX_NOTIFY_THROTTLE = (2**31 - 1) / 1000
"""Longest notify throttle the queue layer accepts (milliseconds in a PostgreSQL integer)."""


def partition_issues(pipeline: Pipeline) -> list[Issue]:
    """Partitioning the queue layer cannot provide: short ranges, unlogged, short retention."""
    partitioned = pipeline.queues.partitioned
    if partitioned is None:
        return []
    issues = []
    if partitioned.interval < MIN_PARTITION_INTERVAL:
        message = (
            f"partition interval ({format_duration(partitioned.interval)}) must be at least "
            f"{format_duration(MIN_PARTITION_INTERVAL)}"
        )
        issues.append(Issue(("queues", "partitioned", "interval"), message))
    if pipeline.queues.unlogged:
        message = "partitioned queues cannot be unlogged; drop one of the two settings"
        issues.append(Issue(("queues", "unlogged"), message))
    if partitioned.retention is not None and partitioned.retention < partitioned.interval:
        message = (
            f"retention ({format_duration(partitioned.retention)}) must be at least the "
            f"partition interval ({format_duration(partitioned.interval)})"
        )
        issues.append(Issue(("queues", "partitioned", "retention"), message))
    return issues


def notify_issues(pipeline: Pipeline) -> list[Issue]:
    """A notify throttle longer than the queue layer can store."""
    notify = pipeline.queues.notify
    if not notify.enabled or notify.throttle <= MAX_NOTIFY_THROTTLE:
        return []
    message = (
        f"notify throttle ({format_duration(notify.throttle)}) must be at most "
        f"{format_duration(MAX_NOTIFY_THROTTLE)}"
    )
    return [Issue(("queues", "notify", "throttle"), message)]


def schedule_issues(pipeline: Pipeline) -> list[Issue]:
    """Schedules sharing a key (same name, or same cron without names)."""
    issues, seen = [], set()
    for index, schedule in enumerate(pipeline.schedules):
        if schedule.key in seen:
            message = f"duplicate schedule '{schedule.key}'; give each schedule a distinct name"
            issues.append(Issue(("schedule", index), message))
        seen.add(schedule.key)
    return issues


def rename_issues(pipeline: Pipeline) -> list[Issue]:
    """`renamed_from` naming a step that still exists, or claimed by two steps."""
    issues, claimed = [], set()
    for name, step in pipeline.steps.items():
        old = step.renamed_from
        if old is None:
            continue
        where: DocPath = ("steps", name, "renamed_from")
        if old in pipeline.steps:
            issues.append(Issue(where, f"step '{old}' still exists; a renamed step is gone"))
        elif old in claimed:
            issues.append(Issue(where, f"another step is already renamed from '{old}'"))
        claimed.add(old)
    return issues


def waiting_issues(pipeline: Pipeline) -> list[Issue]:
    """`max_waiting` on a step nothing hands off to (from defaults it applies to the steps
    with predecessors only)."""
    fed = {target for step in pipeline.steps.values() for target in step.next}
    issues = []
    for name, step in pipeline.steps.items():
        if step.max_waiting is None or step.after or name in fed:
            continue
        message = (
            f"max_waiting on the entry step '{name}' holds nothing back (no step hands off "
            "to it); set it on a step with predecessors"
        )
        issues.append(Issue(("steps", name, "max_waiting"), message))
    return issues


def shared_rate_issues(pipeline: Pipeline) -> list[Issue]:
    """Steps naming one shared rate-limit bucket with different rates."""
    issues: list[Issue] = []
    first: dict[str, tuple[str, str, float]] = {}
    for name in pipeline.steps:
        limit = pipeline.settings(name).rate_limit
        if limit is None or limit.name is None:
            continue
        seen = first.setdefault(limit.name, (name, limit.rate, limit.per_second))
        if limit.per_second != seen[2]:
            message = shared_rate_message(limit.name, limit.rate, seen[1], f"step '{seen[0]}'")
            issues.append(Issue(rate_limit_path(pipeline, name), message))
    return issues


def topic_issues(pipeline: Pipeline) -> list[Issue]:
    """A routing key published twice by one step, a pattern subscribed twice."""
    lists: list[tuple[DocPath, tuple[str, ...], str]] = [
        (("steps", name, "publish"), step.publish, "routing key")
        for name, step in pipeline.steps.items()
    ]
    lists.append((("subscribe",), pipeline.subscriptions, "pattern"))
    issues = []
    for where, values, what in lists:
        seen: set[str] = set()
        for index, value in enumerate(values):
            if value in seen:
                issues.append(Issue((*where, index), f"{what} '{value}' is listed twice"))
            seen.add(value)
    return issues


def shared_rate_message(bucket: str, rate: str, other_rate: str, other: str) -> str:
    """The complaint about a shared bucket given two rates."""
    return (
        f"rate_limit '{bucket}' is {rate} here but {other_rate} in {other}; "
        "steps sharing a limit name must give it one rate"
    )


def rate_limit_path(pipeline: Pipeline, step: str) -> DocPath:
    """Where step `step`'s rate_limit is written: the step's own, else defaults."""
    if pipeline.steps[step].rate_limit is not None:
        return ("steps", step, "rate_limit")
    return ("defaults", "rate_limit")


def _located(pipeline: Pipeline, step: str, *fields: str) -> DocPath:
    """Path of the first of `fields` set on the step, else in defaults, else the step key."""
    own = pipeline.steps[step]
    for field in fields:
        if getattr(own, field) is not None:
            return ("steps", step, field)
    for field in fields:
        if field in pipeline.defaults.model_fields_set:
            return ("defaults", field)
    return ("steps", step)


def _located_retry(pipeline: Pipeline, step: str, *fields: str) -> DocPath:
    """Like `_located`, for keys of the retry policy."""
    own = pipeline.steps[step].retry
    for field in fields:
        if own is not None and getattr(own, field) is not None:
            return ("steps", step, "retry", field)
    for field in fields:
        if getattr(pipeline.defaults.retry, field) is not None:
            return ("defaults", "retry", field)
    return ("steps", step)
