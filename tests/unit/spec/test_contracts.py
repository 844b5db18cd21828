"""Step contracts offline: the edge subset check, file references, warnings, compiled checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.spec import load_pipelines, parse_pipeline
from orchestrator.spec.compat import check_edge
from orchestrator.spec.contracts import ContractViolation, compile_contract

OBJ = {"type": "object"}


def props(required: list[str] | None = None, **schemas: Any) -> dict[str, Any]:
    return {**OBJ, "properties": schemas, "required": required or list(schemas)}


@pytest.mark.parametrize(
    ("output", "input_"),
    [
        (props(n={"type": "integer"}), props(n={"type": "number"})),
        (props(s={"enum": ["a"]}), props(s={"enum": ["a", "b"]})),
        (props(s={"const": "a"}), props(s={"type": "string", "enum": ["a", "b"]})),
        (
            props(s={"type": ["string", "null"]}),
            props(s={"anyOf": [{"type": "string"}, {"type": "null"}]}),
        ),
        (props(s={"type": "string", "nullable": True}), props(s={"type": ["string", "null"]})),
        (
            props(d={"type": "string", "format": "date"}),
            props(d={"type": "string", "format": "date"}),
        ),
        (props(q={"type": "integer", "minimum": 5}), props(q={"type": "integer", "minimum": 1})),
        (
            {**props(a={"type": "string"}), "additionalProperties": False},
            {**props(a={}), "additionalProperties": False},
        ),
        (
            props(xs={"type": "array", "items": {"type": "integer"}}),
            props(xs={"type": "array", "items": {"type": "number"}}),
        ),
        (
            {**props(x={"$ref": "#/$defs/n"}), "$defs": {"n": {"type": "integer"}}},
            {**props(x={"$ref": "#/$defs/m"}), "$defs": {"m": {"type": "number"}}},
        ),
        (
            props(o={"anyOf": [{"type": "integer"}, {"type": "string"}]}),
            props(o={"type": ["string", "number"]}),
        ),
        (OBJ, {}),
    ],
    ids=lambda v: str(v)[:40],
)
def test_compatible_edges_have_no_findings(output: dict[str, Any], input_: dict[str, Any]) -> None:
    assert check_edge(output, input_) == []


def test_tightened_input_is_incompatible_the_other_way() -> None:
    wide, narrow = props(s={"enum": ["a", "b"]}), props(s={"enum": ["a"]})
    assert check_edge(narrow, wide) == []
    (finding,) = check_edge(wide, narrow)
    assert finding.pointer == "/s"
    assert finding.decided


def test_unmodelled_keywords_are_said_plainly_not_guessed() -> None:
    findings = check_edge(
        props(s={"type": "string"}), props(s={"type": "string", "not": {"const": ""}})
    )
    assert [(f.pointer, f.decided) for f in findings] == [("/s", False)]
    assert "cannot decide" in findings[0].message and "'not'" in findings[0].message


def test_recursive_schemas_stop_with_cannot_decide() -> None:
    tree = {
        "$defs": {
            "t": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/t"}}},
                "required": ["kids"],
            }
        },
        "$ref": "#/$defs/t",
    }
    other = {
        "$defs": {
            "t": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/t"}}},
                "required": ["kids"],
            }
        },
        "$ref": "#/$defs/t",
    }
    findings = check_edge(tree, other)
    assert findings and not any(f.decided for f in findings)


YAML = """\
pipeline: p
steps:
  a:
    handler: m:a
    output: {type: object, properties: {s: {type: string, pattern: "^a"}}, required: [s]}
    next: [b]
  b:
    handler: m:b
    input: {type: object, properties: {s: {type: string, pattern: "^b"}}, required: [s]}
"""


def test_an_undecided_edge_is_a_warning_and_the_pipeline_stays_valid(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(YAML)
    result = load_pipelines(path)
    assert result.ok and len(result.pipelines) == 1
    (warning,) = result.diagnostics
    assert (warning.line, warning.column, warning.severity) == (9, 5, "warning")
    assert "cannot decide" in warning.message and "/s" in warning.message


def test_a_file_ref_is_inlined_and_its_content_is_part_of_the_spec_hash(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"type": "object", "required": ["id"]}')
    path = tmp_path / "p.yaml"
    path.write_text("pipeline: p\nsteps:\n  a:\n    handler: m:a\n    input: {$ref: s.json}\n")
    (first,) = load_pipelines(path).pipelines
    assert first.steps["a"].input == {"type": "object", "required": ["id"]}
    (tmp_path / "s.json").write_text('{"type": "object", "required": ["key"]}')
    (second,) = load_pipelines(path).pipelines
    assert first.spec_hash() != second.spec_hash()


def test_a_pipeline_without_contracts_keeps_its_hash_format() -> None:
    pipeline = parse_pipeline("pipeline: p\nsteps:\n  a: {handler: m:a}\n")
    assert "input" not in pipeline.to_json()["steps"]["a"]


def test_compiled_contract_names_the_pointer_and_the_rule() -> None:
    check = compile_contract(
        props(lines={"type": "array", "items": props(qty={"type": "integer"})})
    )
    check({"lines": [{"qty": 1}]})
    with pytest.raises(ContractViolation) as caught:
        check({"lines": [{"qty": 1}, {"qty": "two"}]})
    assert (caught.value.pointer, caught.value.rule) == ("/lines/1/qty", "type")
    assert str(caught.value) == "/lines/1/qty: must be integer (rule 'type')"


def test_compiled_contract_never_fetches_remote_refs() -> None:
    with pytest.raises(ContractViolation, match="not allowed"):
        compile_contract({"$ref": "https://example.invalid/s.json"})


MODELS = """\
from pydantic import BaseModel


class Order(BaseModel):
    order: str
    quantity: int | None = None


class Needs(BaseModel):
    order: str
    quantity: int
"""


def test_pydantic_contracts_are_checked_with_import_handlers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "contract_models_a.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "p.yaml"
    path.write_text(
        "pipeline: p\nsteps:\n"
        "  a: {handler: m:a, output: 'contract_models_a:Order', next: [b]}\n"
        "  b: {handler: m:b, input: 'contract_models_a:Needs'}\n"
    )
    (offline,) = load_pipelines(path).diagnostics
    assert offline.severity == "warning" and "run validate --import-handlers" in offline.message
    diagnostics = load_pipelines(path, import_handlers=True).diagnostics
    imported = [d for d in diagnostics if d.message.startswith("contract")]  # not handlers
    assert [(d.line, d.column, d.severity) for d in imported] == [(4, 21, "error")] * 2
    assert any("at /quantity: optional in the output" in d.message for d in imported)
    assert any("at /quantity: the output may be null" in d.message for d in imported)


def test_a_contract_naming_no_model_is_an_error_with_import_handlers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "contract_models_b.py").write_text("def Order():\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "p.yaml"
    path.write_text("pipeline: p\nsteps:\n  a: {handler: m:a, input: 'contract_models_b:Order'}\n")
    (error,) = [
        d for d in load_pipelines(path, import_handlers=True).diagnostics if "contract" in d.message
    ]
    assert (
        error.message
        == "input contract: contract 'contract_models_b:Order' is not a pydantic model class"
    )
