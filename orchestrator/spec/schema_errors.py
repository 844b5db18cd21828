"""JSON Schema stage: validate plain data against the generated schema, as readable `Issue`s.

jsonschema reports raw errors ("Additional properties are not allowed ('x' was unexpected)",
"True is not valid under any of the given schemas"); this module turns each into one message
pointing at the key or value at fault, with "did you mean" for unknown keys and enum values,
and picks the branch of an ``anyOf`` that matches the value's type so a wrong duration reads
"invalid duration '5 minutez'" rather than a list of alternatives.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from orchestrator.spec import naming
from orchestrator.spec.diagnostics import DocPath, Issue
from orchestrator.spec.durations import DURATION_HINT, DURATION_PATTERN, pattern_problem
from orchestrator.spec.flow import RATE_HINT, RATE_PATTERN
from orchestrator.spec.handlers import HANDLER_HINT, HANDLER_PATTERN
from orchestrator.spec.schema import pipeline_schema
from orchestrator.spec.suggest import closest, did_you_mean

_EXPECTED = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}
_DURATION_TITLES = {"Duration", "PositiveDuration"}
_TOP_LEVEL = "a pipeline file is a mapping with at least 'pipeline:' and 'steps:'"


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(pipeline_schema())


def schema_issues(data: object) -> list[Issue]:
    """Every schema violation in `data` (one pipeline document)."""
    return [issue for error in _validator().iter_errors(data) for issue in translate(error)]


def describe(value: object) -> str:
    """A value as a user would recognise it in their YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string '{value}'"
    return f"the number {value}"


def expected_got(expected: str, value: object) -> str:
    """``expected X, got Y``, with a quoting hint when YAML turned a word into a boolean."""
    message = f"expected {expected}, got {describe(value)}"
    if isinstance(value, bool) and "string" in expected:
        message += " (YAML reads yes/no/on/off/true/false as booleans; quote it)"
    return message


def _instance(error: ValidationError) -> Any:
    """The offending value (jsonschema types it loosely)."""
    return cast(Any, error.instance)


def _rule(error: ValidationError) -> Any:
    """The schema keyword's value (the required list, the enum, the bound...)."""
    return cast(Any, error.validator_value)


def _schema(error: ValidationError) -> dict[str, Any]:
    """The schema object holding the keyword that failed."""
    return dict(error.schema) if isinstance(error.schema, dict) else {}


def translate(error: ValidationError) -> list[Issue]:
    """One jsonschema error -> the issues a user should see."""
    path: DocPath = tuple(error.absolute_path)
    if _is_property_name_error(error):
        return [Issue((*path, str(_instance(error))), _pattern_message(error), "key")]
    handler = _TRANSLATORS.get(str(error.validator), _generic)
    return handler(error, path)


def _is_property_name_error(error: ValidationError) -> bool:
    schema_path = list(error.relative_schema_path)
    return len(schema_path) >= 2 and schema_path[-2] == "propertyNames"


def _additional_properties(error: ValidationError, path: DocPath) -> list[Issue]:
    known = list(_schema(error).get("properties", {}))
    return [
        Issue((*path, key), f"unknown key '{key}'{did_you_mean(key, known)}", "key")
        for key in _instance(error)
        if key not in known
    ]


def _required(error: ValidationError, path: DocPath) -> list[Issue]:
    misspelt = _likely_misspellings(error)
    return [
        Issue((*path, key), f"missing required key '{key}'", "key")
        for key in _rule(error)
        if key not in _instance(error) and key not in misspelt
    ]


def _likely_misspellings(error: ValidationError) -> set[str]:
    """Known keys that an unknown key of the same mapping probably meant (reported there)."""
    known = list(_schema(error).get("properties", {}))
    guesses = (closest(key, known) for key in _instance(error) if key not in known)
    return {guess for guess in guesses if guess}


def _type(error: ValidationError, path: DocPath) -> list[Issue]:
    if not path:
        return [Issue(path, f"{expected_got('a mapping', _instance(error))}; {_TOP_LEVEL}")]
    return [Issue(path, expected_got(_expectation(_rule(error)), _instance(error)))]


def _expectation(types: object) -> str:
    names = [types] if isinstance(types, str) else list(cast(list[str], types))
    return " or ".join(_EXPECTED.get(str(t), str(t)) for t in names)


def _enum(error: ValidationError, path: DocPath) -> list[Issue]:
    value, choices = _instance(error), [str(c) for c in _rule(error)]
    hint = did_you_mean(value, choices) if isinstance(value, str) else ""
    return [Issue(path, f"must be one of {', '.join(choices)}, got {describe(value)}{hint}")]


def _pattern(error: ValidationError, path: DocPath) -> list[Issue]:
    return [Issue(path, _pattern_message(error))]


def _pattern_message(error: ValidationError) -> str:
    value, pattern = str(_instance(error)), _rule(error)
    if pattern == naming.NAME_PATTERN:
        return naming.name_problem(value) or f"invalid name '{value}'"
    if pattern == HANDLER_PATTERN:
        return f"malformed handler '{value}'; {HANDLER_HINT}"
    if pattern == DURATION_PATTERN:
        return pattern_problem(value)
    if pattern == RATE_PATTERN:
        return f"invalid rate '{value}'; {RATE_HINT}"
    return f"invalid value '{value}'; {_schema(error).get('patternErrorMessage', error.message)}"


def _bound(words: str) -> Callable[[ValidationError, DocPath], list[Issue]]:
    def translate_bound(error: ValidationError, path: DocPath) -> list[Issue]:
        return [Issue(path, f"must be {words} {_rule(error)}, got {_instance(error)}")]

    return translate_bound


def _min_properties(error: ValidationError, path: DocPath) -> list[Issue]:
    message = "a pipeline needs at least one step" if path == ("steps",) else "must not be empty"
    return [Issue(path, message)]


def _any_of(error: ValidationError, path: DocPath) -> list[Issue]:
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context or []:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    viable = [errors for errors in branches.values() if not _wrong_type(errors, error)]
    if len(viable) == 1:
        return [issue for sub in viable[0] for issue in translate(sub)]
    if _schema(error).get("title") in _DURATION_TITLES:
        return [Issue(path, f"{expected_got('a duration', _instance(error))}; {DURATION_HINT}")]
    expectations = [_branch_expectation(b) for b in _rule(error)]
    return [Issue(path, expected_got(" or ".join(dict.fromkeys(expectations)), _instance(error)))]


def _wrong_type(errors: list[ValidationError], parent: ValidationError) -> bool:
    """True when a branch failed because the value itself has the wrong type."""
    return any(e.validator == "type" and e.absolute_path == parent.absolute_path for e in errors)


def _branch_expectation(branch: dict[str, Any]) -> str:
    ref = str(branch.get("$ref", ""))
    if ref.startswith("#/$defs/"):
        branch = pipeline_schema()["$defs"].get(ref.removeprefix("#/$defs/"), {})
    return _expectation(branch["type"]) if "type" in branch else "another value"


def _generic(error: ValidationError, path: DocPath) -> list[Issue]:
    return [Issue(path, error.message)]


_TRANSLATORS: dict[str, Callable[[ValidationError, DocPath], list[Issue]]] = {
    "additionalProperties": _additional_properties,
    "required": _required,
    "type": _type,
    "enum": _enum,
    "pattern": _pattern,
    "minimum": _bound("at least"),
    "maximum": _bound("at most"),
    "exclusiveMinimum": _bound("greater than"),
    "minProperties": _min_properties,
    "anyOf": _any_of,
    "oneOf": _any_of,
}
