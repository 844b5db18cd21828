"""Checks across pipeline files: unique names, unique queues, importable handlers."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator

from orchestrator.spec.diagnostics import DocPath, Issue
from orchestrator.spec.file_checks import FileReport
from orchestrator.spec.handlers import HANDLER_PATTERN, HandlerError, inspect_handler
from orchestrator.spec.models import Pipeline
from orchestrator.spec.rules import rate_limit_path, shared_rate_message

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
