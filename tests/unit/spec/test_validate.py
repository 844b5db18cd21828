"""The loader API: several files, directories, cross-file checks, handler imports."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.spec import load_pipelines, load_pipelines_or_raise

ROOT = Path(__file__).resolve().parents[3]
STEP = "steps:\n  a:\n    handler: jobs:run\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_repository_pipelines_are_valid() -> None:
    result = load_pipelines(ROOT / "pipelines")
    assert result.ok, result.diagnostics
    assert sorted(p.name for p in result.pipelines) == ["reports", "work_orders"]
    assert result.sources["reports"].endswith("reports.yaml")
    assert result.step_count == 8


def test_directory_discovery_skips_drafts_and_other_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "pipeline: a\n" + STEP)
    write(tmp_path, "b.yml", "pipeline: b\n" + STEP)
    write(tmp_path, "_draft.yaml", "not: valid")
    write(tmp_path, ".hidden.yaml", "not: valid")
    write(tmp_path, "notes.txt", "not yaml")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "c.yaml", "not: valid")
    result = load_pipelines(tmp_path)
    assert result.ok and [p.name for p in result.pipelines] == ["a", "b"]
    assert len(result.files) == 2


def test_explicit_files_are_checked_whatever_their_name(tmp_path: Path) -> None:
    draft = write(tmp_path, "_draft.yaml", "pipeline: a\n" + STEP)
    assert load_pipelines([draft, draft]).files == [str(draft)]


def test_empty_directory_and_missing_path(tmp_path: Path) -> None:
    result = load_pipelines([tmp_path, tmp_path / "missing.yaml"])
    assert [d.format() for d in result.diagnostics] == [
        f"{tmp_path}: error: no pipeline files (*.yaml, *.yml) in this directory",
        f"{tmp_path / 'missing.yaml'}: error: no such file or directory",
    ]


def test_duplicate_pipeline_names_across_files(tmp_path: Path) -> None:
    write(tmp_path, "one.yaml", "pipeline: same\n" + STEP)
    write(tmp_path, "two.yaml", "# second\npipeline: same\n" + STEP)
    result = load_pipelines(tmp_path)
    assert [d.format() for d in result.diagnostics] == [
        f"{tmp_path / 'two.yaml'}:2:11: error: pipeline 'same' is already defined in "
        f"{tmp_path / 'one.yaml'}"
    ]
    assert [p.name for p in result.pipelines] == ["same"]


def test_duplicate_name_is_found_even_in_an_otherwise_invalid_file(tmp_path: Path) -> None:
    write(tmp_path, "one.yaml", "pipeline: same\n" + STEP)
    write(tmp_path, "two.yaml", "pipeline: same\nsteps: {}\n")
    messages = [d.message for d in load_pipelines(tmp_path).diagnostics]
    assert messages == [
        f"pipeline 'same' is already defined in {tmp_path / 'one.yaml'}",
        "a pipeline needs at least one step",
    ]


def test_two_pipelines_cannot_share_a_queue(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "pipeline: a\ndead_letter: failures\n" + STEP)
    write(tmp_path, "b.yaml", "pipeline: b\ndead_letter: failures\n" + STEP)
    result = load_pipelines(tmp_path)
    assert [(d.file, d.line, d.column, d.message) for d in result.diagnostics] == [
        (
            str(tmp_path / "b.yaml"),
            2,
            14,
            f"queue 'failures' is also used by pipeline 'a' ({tmp_path / 'a.yaml'})",
        )
    ]


def test_default_dead_letter_queue_cannot_collide_with_a_named_one(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "pipeline: a\n" + STEP)
    write(tmp_path, "b.yaml", "pipeline: b\ndead_letter: a_dlq\n" + STEP)
    messages = [d.message for d in load_pipelines(tmp_path).diagnostics]
    assert messages == [f"queue 'a_dlq' is also used by pipeline 'a' ({tmp_path / 'a.yaml'})"]


def test_or_raise(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "pipeline: a\n" + STEP)
    assert [p.name for p in load_pipelines_or_raise(tmp_path)] == ["a"]
    write(tmp_path, "b.yaml", "pipeline: b\n")
    with pytest.raises(ConfigError, match=r"1 error in pipeline files:\n.*b.yaml:1:1: error: "):
        load_pipelines_or_raise(tmp_path)


def test_unreadable_file_is_a_diagnostic(tmp_path: Path) -> None:
    folder = tmp_path / "x.yaml"
    folder.mkdir()
    result = load_pipelines([folder])
    assert "no pipeline files" in result.diagnostics[0].message


@pytest.fixture
def handler_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "hjobs.py").write_text(
        "print('noise on import')\n"
        "async def ok(payload, ctx): ...\n"
        "async def one_arg(payload): ...\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield tmp_path
    sys.modules.pop("hjobs", None)


def test_import_handlers(handler_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(
        handler_project,
        "p.yaml",
        "pipeline: p\nsteps:\n  a: {handler: 'hjobs:ok', next: [b, c]}\n"
        "  b: {handler: 'hjobs:one_arg'}\n  c: {handler: 'hjobs:gone'}\n"
        "  d: {handler: 'nomodule_xyz:f', after: a}\n",
    )
    assert load_pipelines(handler_project).ok  # imports only on request
    result = load_pipelines(handler_project, import_handlers=True)
    assert [(d.line, d.column, d.message) for d in result.diagnostics] == [
        (4, 16, "async handler 'hjobs:one_arg' must accept (payload, ctx), not (payload)"),
        (5, 16, "module 'hjobs' has no attribute 'gone'"),
        (
            6,
            16,
            "cannot import 'nomodule_xyz': ModuleNotFoundError: No module named 'nomodule_xyz'",
        ),
    ]
    assert result.pipelines == []
    assert capsys.readouterr() == ("", "")
