"""Checks across pipeline files: unique names, unique queues, shared rates, topics,
importable handlers."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator

from orchestrator.spec.compat import check_edge
from orchestrator.spec.diagnostics import DocPath, Issue
from orchestrator.spec.file_checks import FileReport
from orchestrator.spec.handlers import HANDLER_PATTERN, HandlerError, inspect_handler
from orchestrator.spec.models import Pipeline
from orchestrator.spec.rules import rate_limit_path, shared_rate_message
from orchestrator.spec.topics import matches

_HANDLER = re.compile(HANDLER_PATTERN)


def check_unique_names(reports: list[FileReport]) -> None:
    """A pipeline name may be declared by one file only; later files get the error."""
    first: dict[str, str] = {}
    for report in reports:
        name = report.declared_name
        if name is None:
            continue
        if name in first:
            message = f"pipeline '{name}' is already defined in {first[name]}"
            _invalidate(report, Issue(("pipeline",), message))
        else:
            first[name] = report.file


def check_unique_queues(reports: list[FileReport]) -> None:
    """Two pipelines must not derive the same queue name (possible through `dead_letter`)."""
    owner: dict[str, tuple[str, str]] = {}
    for report in reports:
        pipeline = report.pipeline
        if pipeline is None:
            continue
        for queue in pipeline.queue_names():
            if queue in owner:
                other, file = owner[queue]
                message = f"queue '{queue}' is also used by pipeline '{other}' ({file})"
                _invalidate(report, Issue(_queue_origin(pipeline, queue), message))
            owner.setdefault(queue, (pipeline.name, report.file))


def check_shared_rates(reports: list[FileReport]) -> None:
    """A rate-limit name shared by several pipelines must have one rate in all of them."""
    first: dict[str, tuple[float, str, str]] = {}
    for report in reports:
        pipeline = report.pipeline
        if pipeline is None:
            continue
        for step in pipeline.steps:
            limit = pipeline.settings(step).rate_limit
            if limit is None or limit.name is None:
                continue
            seen = first.setdefault(limit.name, (limit.per_second, limit.rate, report.file))
            if seen[2] != report.file and seen[0] != limit.per_second:
                message = shared_rate_message(limit.name, limit.rate, seen[1], seen[2])
                _invalidate(report, Issue(rate_limit_path(pipeline, step), message))
                break


def check_topics(reports: list[FileReport]) -> None:
    """Every routing key a step publishes, against the patterns pipelines subscribe to.

    A key no pipeline of the project subscribes to is a warning (another program may bind a
    queue to it), and so is one the publishing pipeline subscribes to itself (every run then
    starts another). Where the publishing step declares an `output` and the subscriber's
    entry step an `input`, the edge is checked as a `next:` edge is: an error at the
    publishing key when the output may break the input.
    """
    valid = [r for r in reports if r.pipeline is not None]
    subscribers = [(r.pipeline, r.file) for r in valid if r.pipeline and r.pipeline.subscriptions]
    for report in valid:
        publisher = report.pipeline
        assert publisher is not None
        issues = [
            issue
            for name, step in publisher.steps.items()
            for index, key in enumerate(step.publish)
            for issue in _publish_issues(publisher, name, index, key, subscribers)
        ]
        for issue in issues:
            report.report(issue)
        if any(issue.severity == "error" for issue in issues):
            report.pipeline = None


def _publish_issues(
    publisher: Pipeline,
    step: str,
    index: int,
    key: str,
    subscribers: list[tuple[Pipeline, str]],
) -> list[Issue]:
    where: DocPath = ("steps", step, "publish", index)
    reached = []
    for subscriber, file in subscribers:
        pattern = next((p for p in subscriber.subscriptions if matches(p, key)), None)
        if pattern is not None:
            reached.append((subscriber, file, pattern))
    if not reached:
        message = f"no pipeline here subscribes to '{key}': what this step publishes goes nowhere"
        return [Issue(where, message, severity="warning")]
    issues = []
    for subscriber, file, pattern in reached:
        if subscriber.name == publisher.name:
            message = (
                f"pipeline '{publisher.name}' subscribes to '{pattern}' itself: every run that "
                f"publishes '{key}' starts another run"
            )
            issues.append(Issue(where, message, severity="warning"))
        issues.extend(_contract_issues(publisher, step, where, key, subscriber, pattern, file))
    return issues


def _contract_issues(
    publisher: Pipeline,
    step: str,
    where: DocPath,
    key: str,
    subscriber: Pipeline,
    pattern: str,
    file: str,
) -> list[Issue]:
    """The edge from `step`'s output to the subscriber's entry input, when both are declared."""
    given = publisher.steps[step].output
    entry = subscriber.entry_step
    wanted = subscriber.steps[entry].input
    if given is None or wanted is None:
        return []
    edge = (
        f"contract '{step}' output -> '{subscriber.name}.{entry}' input "
        f"('{key}' reaches subscribe '{pattern}' in {file})"
    )
    if not isinstance(given, dict) or not isinstance(wanted, dict):
        return [Issue(where, f"{edge}: cannot decide with a pydantic model", severity="warning")]
    return [
        Issue(where, f"{edge} {f.describe()}", severity="error" if f.decided else "warning")
        for f in check_edge(given, wanted)
    ]


def _queue_origin(pipeline: Pipeline, queue: str) -> DocPath:
    if queue == pipeline.dead_letter_queue:
        return ("dead_letter",) if pipeline.dead_letter else ("pipeline",)
    step = next(s for s in pipeline.steps if pipeline.queue_name(s) == queue)
    return ("steps", step)


def _invalidate(report: FileReport, issue: Issue) -> None:
    report.report(issue)
    report.pipeline = None


def check_handlers(report: FileReport, checked: dict[str, str | None]) -> None:
    """Import every well-formed handler reference of the file and check its signature.

    `checked` caches the outcome per reference across files, so each is imported once.
    """
    for path, ref in _handler_refs(report.document.data):
        if ref not in checked:
            checked[ref] = _handler_problem(ref)
        problem = checked[ref]
        if problem:
            _invalidate(report, Issue(path, problem))


def _handler_refs(data: object) -> Iterator[tuple[DocPath, str]]:
    steps = data.get("steps") if isinstance(data, dict) else None
    for name, step in (steps or {}).items() if isinstance(steps, dict) else ():
        ref = step.get("handler") if isinstance(step, dict) else None
        if isinstance(ref, str) and _HANDLER.match(ref):
            yield ("steps", name, "handler"), ref


def _handler_problem(ref: str) -> str | None:
    """Why `ref` cannot serve as a handler; output printed while importing is swallowed."""
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            inspect_handler(ref)
    except HandlerError as exc:
        return str(exc)
    return None
