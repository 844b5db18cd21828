"""Payload contracts of steps: reading them, checking them, compiling them.

A contract is a JSON Schema (inline, or ``{$ref: file.json}`` naming a file relative to the
pipeline file) or the path of a pydantic model (``package.module:Model``). A file ``$ref`` is
inlined when the pipeline file is loaded (`inline_file_refs`), so the models, the stored spec
and its hash carry the schema itself: editing the schema file changes the spec hash. Inside a
contract only local references (``#/$defs/...``) are allowed.

`compile_contract` turns a schema into a validator once (generated Python code, a few
microseconds per small payload); `ContractViolation` names the JSON pointer of the first fault
and the rule it broke.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ValidationError

from orchestrator.spec.compat import Finding, check_edge
from orchestrator.spec.diagnostics import DocPath, Issue
from orchestrator.spec.handlers import HandlerError, resolve_handler

if TYPE_CHECKING:
    from orchestrator.spec.models import Pipeline

CONTRACT_KEYS = ("input", "output")
MAX_SCHEMA_BYTES = 1024 * 1024

Validator = Callable[[Any], Any]


class ContractViolation(Exception):
    """A value that breaks a contract: where (JSON pointer) and which rule."""

    def __init__(self, pointer: str, rule: str, detail: str) -> None:
        super().__init__(pointer, rule, detail)
        self.pointer = pointer
        self.rule = rule
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.detail} (rule '{self.rule}')"


def is_model_ref(contract: object) -> bool:
    """True for a pydantic model path (a string), False for a JSON Schema."""
    return isinstance(contract, str)


# --- loading ------------------------------------------------------------------------------


def inline_file_refs(data: object, file: str) -> list[Issue]:
    """Replace every contract written as ``{$ref: path}`` by the JSON file it names.

    Paths are relative to the pipeline file's folder. Problems (missing file, bad JSON, keys
    beside the ``$ref``) are returned as issues at the ``$ref``; the contract is then left as
    written and the later stages stay silent about it.
    """
    issues: list[Issue] = []
    base = Path(file).parent
    for path, contract in _contracts(data):
        ref = contract.get("$ref")
        if not isinstance(ref, str) or ref.startswith("#"):
            continue
        if len(contract) > 1:
            issues.append(Issue((*path, "$ref"), "a file $ref stands alone in a contract"))
            continue
        loaded = _read_schema(base / ref, ref)
        if isinstance(loaded, str):
            issues.append(Issue((*path, "$ref"), loaded))
        else:
            _replace(data, path, loaded)
    return issues


def _contracts(data: object) -> Iterator[tuple[DocPath, dict[str, Any]]]:
    steps = data.get("steps") if isinstance(data, dict) else None
    for name, step in steps.items() if isinstance(steps, dict) else ():
        for key in CONTRACT_KEYS:
            value = step.get(key) if isinstance(step, dict) else None
            if isinstance(value, dict):
                yield ("steps", name, key), value


def _read_schema(path: Path, ref: str) -> dict[str, Any] | str:
    """The JSON object in `path` (written `ref` in the file), or why it cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return f"cannot read schema file '{ref}': {exc.strerror or exc}"
    if len(raw) > MAX_SCHEMA_BYTES:
        return f"schema file '{ref}' is larger than {MAX_SCHEMA_BYTES // 1024} KiB"
    try:
        loaded = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"schema file '{ref}' is not valid JSON: {exc}"
    if not isinstance(loaded, dict):
        return f"schema file '{ref}' must hold a JSON object"
    return loaded


def _replace(data: Any, path: DocPath, value: dict[str, Any]) -> None:
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


# --- checking -----------------------------------------------------------------------------


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why `schema` cannot serve as a contract (None when it can)."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"/{p}" for p in exc.path)
        return f"not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}"
    remote = next(_remote_refs(schema), None)
    if remote is not None:
        return (
            f"$ref '{remote}': inside a contract only local references ('#/...') are allowed; "
            "a file may only be named by the contract's own top-level $ref"
        )
    return None


def _remote_refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            yield ref
        for value in node.values():
            yield from _remote_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _remote_refs(item)


# --- checkers ------------------------------------------------------------------------------


def checker(contract: str | dict[str, Any]) -> Callable[[Any], None]:
    """A check raising `ContractViolation`, compiled once per process and contract."""
    if isinstance(contract, str):
        return _model_checker(contract)
    return _compiled(json.dumps(contract, sort_keys=True))


@functools.cache
def _compiled(schema_text: str) -> Callable[[Any], None]:
    return compile_contract(json.loads(schema_text))


@functools.cache
def _model_checker(ref: str) -> Callable[[Any], None]:
    model = contract_model(ref)

    def check(value: Any) -> None:
        try:
            model.model_validate(value)
        except ValidationError as exc:
            raise violation_of(exc) from None

    return check


def contract_model(ref: str) -> type[BaseModel]:
    """The pydantic model class named `ref` (``package.module:Model``)."""
    target = resolve_handler(ref)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise HandlerError(f"contract '{ref}' is not a pydantic model class")
    return target


def violation_of(exc: ValidationError) -> ContractViolation:
    """The first error of a pydantic ValidationError as a `ContractViolation`."""
    first = exc.errors()[0]
    pointer = "".join(f"/{part}" for part in first["loc"])
    return ContractViolation(pointer, first["type"], first["msg"])


# --- compiling ----------------------------------------------------------------------------


def _refuse(uri: str) -> Any:
    raise ContractViolation("", "$ref", f"remote reference '{uri}' is not allowed")


_NO_REMOTE = {"http": _refuse, "https": _refuse, "file": _refuse}


def compile_contract(schema: dict[str, Any]) -> Callable[[Any], None]:
    """A function raising `ContractViolation` for a value that breaks `schema`."""
    compiled: Validator = fastjsonschema.compile(schema, handlers=_NO_REMOTE, use_default=False)

    def check(value: Any) -> None:
        try:
            compiled(value)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _violation(exc) from None

    return check


def _violation(exc: fastjsonschema.JsonSchemaValueException) -> ContractViolation:
    parts = list(exc.path or [])[1:]  # the first part is the variable name "data"
    pointer = "".join("/" + _escape(str(p)) for p in parts)
    rule = str(exc.rule or "schema")
    if rule == "required" and isinstance(exc.value, dict):
        missing = [p for p in exc.rule_definition or () if p not in exc.value]
        if missing:
            return ContractViolation(f"{pointer}/{_escape(str(missing[0]))}", rule, "is missing")
    detail = str(exc.message)
    name = str(exc.name or "data")
    if detail.startswith(name + " "):
        detail = detail[len(name) + 1 :]
    return ContractViolation(pointer, rule, detail)


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


# --- the edges of a pipeline --------------------------------------------------------------


def contract_issues(pipeline: Pipeline, *, import_models: bool = False) -> list[Issue]:
    """Invalid contracts, then every edge whose producer may break its consumer's input.

    An edge is checked where both ends are JSON Schemas. A pydantic model end is imported and
    its JSON Schema used when `import_models` is set (``validate --import-handlers``); without
    it the edge is reported as undecided.
    """
    issues = [
        Issue(("steps", name, key), f"{key} contract: {problem}")
        for name, step in pipeline.steps.items()
        for key in CONTRACT_KEYS
        if isinstance(contract := getattr(step, key), dict)
        and (problem := schema_problem(contract))
    ]
    schemas: dict[str, dict[str, Any]] = {}
    if import_models:
        issues.extend(_import_models(pipeline, schemas))
    if issues:
        return issues
    for name in pipeline.order:
        issues.extend(_edge_issues(pipeline, name, schemas))
    return issues


def _import_models(pipeline: Pipeline, schemas: dict[str, dict[str, Any]]) -> list[Issue]:
    """Import every model contract into `schemas` (ref -> JSON Schema); issues for failures."""
    issues = []
    for name, step in pipeline.steps.items():
        for key in CONTRACT_KEYS:
            ref = getattr(step, key)
            if not isinstance(ref, str) or ref in schemas:
                continue
            try:
                schemas[ref] = contract_model(ref).model_json_schema()
            except HandlerError as exc:
                issues.append(Issue(("steps", name, key), f"{key} contract: {exc}"))
    return issues


def effective_input(pipeline: Pipeline, step: str) -> dict[str, Any] | str | None:
    """The contract a step's messages must satisfy: its `input`, else what it receives."""
    own = pipeline.steps[step].input
    if own is not None:
        return own
    return produced_for(pipeline, step)


def produced_for(pipeline: Pipeline, step: str) -> dict[str, Any] | str | None:
    """What the predecessors promise `step`: the single one's output, or a join's object."""
    return promised({p: pipeline.steps[p].output for p in pipeline.predecessors(step)})


def promised(outputs: Mapping[str, Any]) -> dict[str, Any] | str | None:
    """What predecessors with `outputs` ({step: output contract}) promise their successor."""
    if len(outputs) == 1:
        only: dict[str, Any] | str | None = next(iter(outputs.values()))
        return only
    if not outputs or any(is_model_ref(o) for o in outputs.values()):
        return None
    return {
        "type": "object",
        "properties": {p: o if o is not None else True for p, o in outputs.items()},
        "required": list(outputs),
        "additionalProperties": False,
    }


def stored_input(steps: Mapping[str, Mapping[str, Any]], step: str) -> Any:
    """`effective_input` read from a stored spec's steps (`Pipeline.to_json()["steps"]`)."""
    own = steps[step].get("input")
    if own is not None:
        return own
    return promised({p: steps[p].get("output") for p in steps[step].get("predecessors", ())})


def _edge_issues(
    pipeline: Pipeline, step: str, schemas: Mapping[str, dict[str, Any]]
) -> list[Issue]:
    predecessors = pipeline.predecessors(step)
    wanted = _resolved(pipeline.steps[step].input, schemas)
    if wanted is None or not predecessors:
        return []
    outputs = {p: _resolved(pipeline.steps[p].output, schemas) for p in predecessors}
    given = promised(outputs)
    where: DocPath = ("steps", step, "input")
    edge = f"'{predecessors[0]}' output -> '{step}' input"
    if len(predecessors) > 1:
        edge = f"join of {', '.join(repr(p) for p in predecessors)} -> '{step}' input"
    if given is None and len(predecessors) == 1:
        return []  # the producer promises nothing: checked at run time only
    if not isinstance(given, dict) or not isinstance(wanted, dict):
        message = (
            f"contract {edge}: cannot decide with a pydantic model; run validate --import-handlers"
        )
        return [Issue(where, message, "key", "warning")]
    return [_edge_issue(where, edge, f) for f in check_edge(given, wanted)]


def _resolved(contract: Any, schemas: Mapping[str, dict[str, Any]]) -> Any:
    """A model contract's imported JSON Schema when there is one, else the contract."""
    return schemas.get(contract, contract) if isinstance(contract, str) else contract


def _edge_issue(where: DocPath, edge: str, finding: Finding) -> Issue:
    message = f"contract {edge} {finding.describe()}"
    return Issue(where, message, "key", "error" if finding.decided else "warning")
