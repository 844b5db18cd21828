"""The JSON Schema of pipeline files, generated from the models.

`pipeline_schema` is what ``orchestrator schema`` prints and what ``schemas/pipeline.schema.json``
holds (a test keeps them equal). Editors speaking yaml-language-server use it to validate and
complete pipeline files; the nonstandard ``patternErrorMessage``/``errorMessage`` keywords give
them (and `schema_issues`, see ``schema_errors.py``) readable messages.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from orchestrator.spec.durations import DURATION_HINT, DURATION_PATTERN, MAX_DURATION
from orchestrator.spec.models import DURATION_SCHEMA_KEY, Pipeline

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_DURATION_DESCRIPTION = (
    "A duration: a number of seconds, or a string such as 500ms, 30s, 5m, 2h, 7d, "
    "'1 day', '2 hours' or '1h30m'."
)


class _Generator(GenerateJsonSchema):
    """Pydantic's generator, minus ``null`` for optional keys (a key left out inherits)."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        json_schema = super().default_schema(schema)
        if "default" in json_schema:
            json_schema["default"] = _without_nulls(json_schema["default"])
            if json_schema["default"] is None:
                del json_schema["default"]
        return json_schema

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        """Key patterns as ``propertyNames`` (so other keys are errors), values as
        ``additionalProperties``."""
        json_schema = super().dict_schema(schema)
        patterns = json_schema.pop("patternProperties", None)
        if patterns:
            ((pattern, values),) = patterns.items()
            json_schema["propertyNames"] = {
                "pattern": pattern,
                **json_schema.get("propertyNames", {}),
            }
            json_schema["additionalProperties"] = values
        return json_schema


def _without_nulls(value: Any) -> Any:
    """Default values as a user would write them: keys whose value is null left out."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


@cache
def pipeline_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one pipeline file."""
    generated = _finish(Pipeline.model_json_schema(by_alias=True, schema_generator=_Generator))
    definitions = {**generated.pop("$defs"), **_duration_definitions()}
    head = {key: generated.pop(key) for key in ("title", "description", "type")}
    return {
        "$schema": SCHEMA_DIALECT,
        **head,
        **generated,
        "$defs": dict(sorted(definitions.items())),
    }


def schema_text() -> str:
    """The schema as committed: 2-space indent, trailing newline."""
    return json.dumps(pipeline_schema(), indent=2, ensure_ascii=False) + "\n"


def _duration_definitions() -> dict[str, Any]:
    def definition(title: str, number: dict[str, float], extra: str) -> dict[str, Any]:
        return {
            "title": title,
            "description": _DURATION_DESCRIPTION + extra,
            "anyOf": [
                {
                    "type": "string",
                    "pattern": DURATION_PATTERN,
                    "patternErrorMessage": f"invalid duration; {DURATION_HINT}",
                },
                {"type": "number", **number, "maximum": MAX_DURATION},
            ],
            "errorMessage": f"expected a duration; {DURATION_HINT}",
            "examples": ["30s", "5m", "1 day"],
        }

    return {
        "Duration": definition("Duration", {"minimum": 0}, ""),
        "PositiveDuration": definition("PositiveDuration", {"exclusiveMinimum": 0}, " Not zero."),
    }


def _finish(node: Any) -> Any:
    """Recursively: duration placeholders become ``$ref``s, descriptions become one line."""
    if isinstance(node, list):
        return [_finish(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: _finish(value) for key, value in node.items()}
    if isinstance(result.get("description"), str):
        result["description"] = " ".join(result["description"].split())
    if DURATION_SCHEMA_KEY in result:
        name = result.pop(DURATION_SCHEMA_KEY)
        result = {"$ref": f"#/$defs/{name}", **result}
    return result
