"""Pydantic stage: build the `Pipeline` model and turn its errors into `Issue`s.

Field errors (wrong type, unknown key) are mostly caught by the schema stage already; they are
translated here for the few checks only the models make (valid cron expression, time zone,
positive duration). Whole-pipeline problems (graph, queue names, timeouts) arrive as
`InvalidPipeline` inside the ValidationError and keep their own document paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from orchestrator.spec.diagnostics import DocPath, InvalidPipeline, Issue, Target
from orchestrator.spec.models import Pipeline
from orchestrator.spec.schema_errors import describe

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "float_type": "a number",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
}


@dataclass
class ModelOutcome:
    """The model when valid; else field issues and whole-pipeline issues, kept apart.

    `value_issues` come from checks only the models make (cron, time zone, zero durations);
    `field_issues` from checks the schema makes as well (types, unknown and missing keys).
    """

    pipeline: Pipeline | None = None
    value_issues: list[Issue] = field(default_factory=list)
    field_issues: list[Issue] = field(default_factory=list)
    pipeline_issues: list[Issue] = field(default_factory=list)


def build_model(data: object) -> ModelOutcome:
    """Validate `data` into a `Pipeline`, collecting every problem."""
    try:
        return ModelOutcome(pipeline=Pipeline.model_validate(data))
    except ValidationError as exc:
        outcome = ModelOutcome()
        for error in exc.errors():
            _collect(error, outcome)
        return outcome


def _collect(error: ErrorDetails, outcome: ModelOutcome) -> None:
    loc: DocPath = tuple(error["loc"])
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, InvalidPipeline):
        outcome.pipeline_issues += [
            Issue((*loc, *i.path), i.message, i.target) for i in cause.issues
        ]
        return
    target: Target = "value"
    if loc and loc[-1] == "[key]":
        loc, target = loc[:-1], "key"
    if error["type"] in ("missing", "extra_forbidden"):
        target = "key"
    issues = outcome.value_issues if error["type"] == "value_error" else outcome.field_issues
    issues.append(Issue(loc, _message(error, loc, cause), target))


def _message(error: ErrorDetails, loc: DocPath, cause: object) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key '{loc[-1]}'"
    if kind == "missing":
        return f"missing required key '{loc[-1]}'"
    if kind == "value_error" and isinstance(cause, ValueError):
        return str(cause)
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {describe(error['input'])}"
    if kind == "too_short" and loc == ("steps",):
        return "a pipeline needs at least one step"
    text = error["msg"]
    return text[:1].lower() + text[1:]
