"""Hostile and broken pipeline files through `orchestrator validate`, `plan` and `apply`.

YAML bombs (deep nesting, alias expansion), bytes that are not UTF-8, empty and null
documents, Python tags, oversized files, folders without pipelines. Each file gets one-line
diagnostics (``file:line:col: error: message``), validate exits 1, nothing prints a
traceback, nothing is imported or executed, and plan/apply write nothing.

The corpus is written once per module and validated by one `orchestrator validate` call over
the whole folder; each file's diagnostics are then checked on their own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.badinput.support import (
    PIPELINE,
    DatabaseState,
    Result,
    assert_refused,
    cli,
    lines_of,
)

VALID_HEAD = "pipeline: bomb\nsteps:\n  a:\n    handler: handlers.orders:receive\n"


def _laughs() -> str:
    """The billion laughs: each anchor aliases the previous one nine times."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "pipeline: laughs\n" + "\n".join(lines) + "\nsteps: *a9\n"


def _huge_alias() -> str:
    """One anchored list of 10 000 items, aliased 2 000 times (quadratic if expanded)."""
    items = ", ".join(str(n) for n in range(10_000))
    aliases = "".join(f"  s{n}: *big\n" for n in range(2_000))
    return f"pipeline: huge\nbig: &big [{items}]\nsteps:\n{aliases}"


def _deep_block(levels: int) -> str:
    body = "".join("  " * n + f"k{n}:\n" for n in range(levels))
    return VALID_HEAD + "    description:\n" + body.replace("\n", "\n    ").rstrip() + " x\n"


# name -> (content, fragment of the expected diagnostic)
CORPUS: dict[str, tuple[bytes, str]] = {
    "deep_flow_list.yaml": (
        (VALID_HEAD + "    description: " + "[" * 100_000 + "]" * 100_000 + "\n").encode(),
        "nesting deeper than",
    ),
    "deep_flow_map.yaml": (
        (VALID_HEAD + "    description: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n").encode(),
        "nesting deeper than",
    ),
    "deep_block_map.yaml": (_deep_block(300).encode(), "nesting deeper than"),
    "billion_laughs.yaml": (_laughs().encode(), "anchors and aliases are not supported"),
    "huge_alias.yaml": (_huge_alias().encode(), "anchors and aliases are not supported"),
    "merge_key.yaml": (
        b"pipeline: merged\nbase: &base {handler: handlers.orders:receive}\n"
        b"steps:\n  a:\n    <<: *base\n",
        "anchors and aliases are not supported",
    ),
    "latin1.yaml": ("pipeline: caf\u00e9\nsteps: {}\n".encode("latin-1"), "not valid UTF-8"),
    "utf16.yaml": (PIPELINE.encode("utf-16"), "not valid UTF-8"),
    "truncated_utf8.yaml": (b"pipeline: x\ndescription: 'caf\xc3'\nsteps: {}\n", "not valid UTF-8"),
    "binary.yaml": (bytes(range(256)) * 64, "not valid UTF-8"),
    "nul_byte.yaml": (b"pipeline: x\x00\nsteps: {}\n", "invalid character"),
    "control_char.yaml": (b"pipeline: x\x07\nsteps: {}\n", "invalid character"),
    "empty.yaml": (b"", "file is empty"),
    "blank_lines.yaml": (b"\n\n   \n\t\n", ""),
    "comment_only.yaml": (b"# nothing here yet\n", "file is empty"),
    "too_large.yaml": (
        (PIPELINE + "description: " + "x" * (2 << 20) + "\n").encode(),
        "file is larger than",
    ),
    "python_tag.yaml": (
        b"pipeline: tagged\nsteps:\n  a: !!python/object/apply:os.system ['touch pwned']\n",
        "unsupported YAML tag",
    ),
    "python_name_tag.yaml": (
        b"pipeline: !!python/name:os.system\nsteps: {}\n",
        "unsupported YAML tag",
    ),
    "root_scalar.yaml": (b"just a string\n", "expected a mapping"),
    "unterminated.yaml": (b"pipeline: 'open\nsteps: {}\n", "invalid YAML"),
}

DIAGNOSTIC = re.compile(r"^(?P<file>[^:]+\.yaml)(:\d+:\d+)?: error: (?P<message>.+)$")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    folder = tmp_path_factory.mktemp("project") / "pipelines"
    folder.mkdir()
    for name, (content, _) in CORPUS.items():
        (folder / name).write_bytes(content)
    return folder, cli("validate", str(folder), cwd=folder.parent, timeout=120)


def test_validate_refuses_the_corpus_without_a_traceback(corpus: tuple[Path, Result]) -> None:
    folder, result = corpus
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    for line in lines_of(result.err):
        assert DIAGNOSTIC.match(line), f"not a one-line diagnostic: {line[:300]!r}"
    assert result.out.strip().endswith("0 pipelines valid (0 steps)")
    # Nothing was executed: no YAML tag ran os.system.
    assert not (folder / "pwned").exists() and not (folder.parent / "pwned").exists()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_bad_file_gets_its_own_diagnostic(corpus: tuple[Path, Result], name: str) -> None:
    _, result = corpus
    fragment = CORPUS[name][1]
    mine = [
        m["message"]
        for m in map(DIAGNOSTIC.match, lines_of(result.err))
        if m and m["file"]
        if Path(m["file"]).name == name
    ]
    assert mine, f"{name}: no diagnostic in\n{result.err[:3000]}"
    assert any(fragment in message for message in mine), mine
    assert all(len(message) < 500 for message in mine), "a diagnostic should be one short line"


def test_json_diagnostics_are_json(corpus: tuple[Path, Result]) -> None:
    folder, _ = corpus
    result = cli("validate", "--format", "json", str(folder), cwd=folder.parent, timeout=120)
    assert result.code == 1
    diagnostics = json.loads(result.out)
    assert {Path(d["file"]).name for d in diagnostics} == set(CORPUS)


@pytest.mark.parametrize("document", ["---\n", "~\n", "null\n", "--- null\n...\n"])
def test_a_null_document_is_not_a_valid_pipeline_file(tmp_path: Path, document: str) -> None:
    """A file whose only document is null holds no pipeline, like an empty file."""
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "nothing.yaml").write_text(document)
    result = cli("validate", "pipelines", cwd=tmp_path)
    assert result.code == 1, result.text
    assert "nothing.yaml:1:1: error:" in result.err


def test_a_folder_without_pipeline_files(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "README.md").write_text("# notes\n")
    (folder / "_draft.yaml").write_text(PIPELINE)  # skipped: starts with '_'
    (folder / "nested").mkdir()
    (folder / "nested" / "orders.yaml").write_text(PIPELINE)  # not searched
    result = cli("validate", "pipelines", cwd=tmp_path)
    assert result.code == 1
    assert "Traceback" not in result.text
    assert lines_of(result.err) == [
        "pipelines: error: no pipeline files (*.yaml, *.yml) in this directory"
    ]


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    assert_refused(cli("validate", "nowhere", cwd=tmp_path), 2, "no such file or directory")


def test_many_steps_do_not_make_validate_hang(tmp_path: Path) -> None:
    """20 000 unconnected steps (600 kB, under the 1 MiB limit) give 20 000 diagnostics.
    Collecting them must not take quadratic time: linear work is a few seconds, quadratic
    minutes (a file of the maximum size would hold a validator in CI for a quarter hour)."""
    steps = "".join(f"  s{n}: {{handler: handlers.orders:receive}}\n" for n in range(20_000))
    (tmp_path / "many.yaml").write_text("pipeline: many\nsteps:\n" + steps)
    result = cli("validate", "many.yaml", cwd=tmp_path, timeout=120)
    assert result.code == 1
    assert "Traceback" not in result.text
    assert len(lines_of(result.err)) >= 19_999


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_plan_and_apply_refuse_bad_files_and_write_nothing(
    tmp_path: Path, empty_dsn: str, command: str
) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "orders.yaml").write_text(PIPELINE)
    for name in ("billion_laughs.yaml", "latin1.yaml", "python_tag.yaml", "deep_flow_list.yaml"):
        (folder / name).write_bytes(CORPUS[name][0])
    before = DatabaseState.read(empty_dsn)
    result = cli(command, "--dsn", empty_dsn, cwd=tmp_path, timeout=120)
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    files = {Path(m["file"]).name for m in map(DIAGNOSTIC.match, lines_of(result.err)) if m}
    assert files == {"billion_laughs.yaml", "latin1.yaml", "python_tag.yaml", "deep_flow_list.yaml"}
    assert before.differences(DatabaseState.read(empty_dsn)) == {}
    assert not (tmp_path / "pwned").exists()
