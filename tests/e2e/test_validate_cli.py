"""`orchestrator validate` and `orchestrator schema` as a user (or CI, or pre-commit) runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "orchestrator"
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "orchestrator"]
INVALID = ROOT / "tests" / "corpus" / "invalid"
LINE = re.compile(r"^[^:\n]+:\d+:\d+: error: [^\n]+$")


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_repository_pipelines_are_valid() -> None:
    done = run("validate")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "2 pipelines valid (8 steps)\n"


def test_invalid_files_exit_1_with_one_line_per_error() -> None:
    files = sorted(INVALID.glob("*.yaml"))
    done = run("validate", *(str(f.relative_to(ROOT)) for f in files))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) >= len(files)
    assert all(LINE.match(line) for line in lines), done.stderr
    assert "Traceback" not in done.stderr
    assert (
        "tests/corpus/invalid/unknown_step_key.yaml:10:5: error: unknown key 'concurrancy' "
        "(did you mean 'concurrency'?)" in lines
    )
    assert re.fullmatch(r"\d+ errors in \d+ files; 0 pipelines valid \(0 steps\)\n", done.stdout)


def test_json_format() -> None:
    done = run("validate", "--format", "json", "tests/corpus/invalid/cycle.yaml")
    assert (done.returncode, done.stderr) == (1, "")
    assert json.loads(done.stdout) == [
        {
            "file": "tests/corpus/invalid/cycle.yaml",
            "line": 13,
            "column": 12,
            "severity": "error",
            "key": "steps.sap_sync.next[0]",
            "message": "cycle: barcode -> sap_sync -> barcode",
        }
    ]
    valid = run("validate", "--format", "json")
    assert (valid.returncode, json.loads(valid.stdout)) == (0, [])


def test_missing_path_is_a_usage_error() -> None:
    done = run("validate", "pipelines", "no/such/dir")
    assert done.returncode == 2
    assert done.stderr == "orchestrator: error: no such file or directory: no/such/dir\n"


def test_directory_without_pipelines(tmp_path: Path) -> None:
    done = run("validate", str(tmp_path))
    assert done.returncode == 1
    assert (
        done.stderr == f"{tmp_path}: error: no pipeline files (*.yaml, *.yml) in this directory\n"
    )


def test_hostile_files_give_one_line_each(tmp_path: Path) -> None:
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)))
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 100000)
    (tmp_path / "bomb.yaml").write_text("a: &a [x, x]\nb: [*a, *a]\n")
    done = run("validate", str(tmp_path))
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 3
    assert all(LINE.match(line) for line in done.stderr.splitlines()), done.stderr


def test_import_handlers_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "myjobs.py").write_text("def run(payload):\n    return payload\n")
    (tmp_path / "pipelines" / "p.yaml").write_text(
        "pipeline: p\nsteps:\n"
        "  a: {handler: 'myjobs:run', next: b}\n"
        "  b: {handler: 'myjobs:nope'}\n"
    )
    assert run("validate", cwd=tmp_path).returncode == 0
    done = run("validate", "--import-handlers", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == (
        "pipelines/p.yaml:4:16: error: module 'myjobs' has no attribute 'nope'\n"
    )


def test_schema_command_prints_the_committed_schema() -> None:
    done = run("schema")
    assert done.returncode == 0
    assert done.stdout == (ROOT / "schemas" / "pipeline.schema.json").read_text()
    assert json.loads(done.stdout)["title"] == "Pipeline"
