"""The committed JSON Schema is the generated one, and it agrees with the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from orchestrator.spec.load import load_bytes
from orchestrator.spec.schema import pipeline_schema, schema_text
from orchestrator.spec.schema_errors import schema_issues

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "schemas" / "pipeline.schema.json"
VALID = sorted((ROOT / "tests" / "corpus" / "valid").glob("*.yaml")) + sorted(
    (ROOT / "pipelines").glob("*.yaml")
)


def test_committed_schema_is_up_to_date() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "orchestrator", "schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert printed == schema_text()
    assert COMMITTED.read_text() == printed, "run `make schema` and commit the result"


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(pipeline_schema())


def test_every_field_is_documented() -> None:
    def walk(node: object) -> None:
        if isinstance(node, dict):
            for name, prop in node.get("properties", {}).items():
                assert prop.get("description"), f"property {name} has no description"
            for value in node.values():
                walk(value)

    walk(pipeline_schema())


def test_durations_are_string_or_number_with_a_pattern() -> None:
    duration = pipeline_schema()["$defs"]["Duration"]
    kinds = {branch["type"] for branch in duration["anyOf"]}
    assert kinds == {"string", "number"}
    assert any("pattern" in branch for branch in duration["anyOf"])


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_files_pass_the_schema(path: Path) -> None:
    assert schema_issues(load_bytes(path.read_bytes()).data) == []


def test_optional_keys_do_not_accept_null() -> None:
    data = {"pipeline": "p", "steps": {"a": {"handler": "m:f", "timeout": None}}}
    assert [i.message for i in schema_issues(data)] == [
        "expected a duration, got nothing (null); use e.g. 500ms, 30s, 5m, 2h, 7d, "
        "'1 day', '2 hours' or a number of seconds"
    ]
