"""Every file of tests/corpus: invalid files produce exactly the diagnostics they announce.

Each invalid file starts with comments of the form ``# expect: LINE:COL: message``, one per
expected diagnostic, in output order.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.spec import load_pipelines

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))
VALID = sorted((CORPUS / "valid").glob("*.yaml"))
_EXPECT = re.compile(rb"^# expect: (\d+):(\d+): (.*)$", re.MULTILINE)


def expectations(path: Path) -> list[tuple[int, int, str]]:
    raw = path.read_bytes()
    return [(int(a), int(b), m.decode()) for a, b, m in _EXPECT.findall(raw)]


def test_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 30
    assert all(expectations(p) for p in INVALID), "every invalid file states its expectation"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_file_reports_expected_diagnostics(path: Path) -> None:
    result = load_pipelines(path)
    got = [(d.line, d.column, d.message) for d in result.diagnostics]
    assert got == expectations(path)
    assert all(d.file == str(path) for d in result.diagnostics)
    assert result.pipelines == []


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_file_loads(path: Path) -> None:
    result = load_pipelines(path)
    assert result.diagnostics == []
    assert len(result.pipelines) == 1


def test_whole_corpus_reports_every_file() -> None:
    result = load_pipelines(CORPUS / "invalid")
    assert {d.file for d in result.diagnostics} == {str(p) for p in INVALID}
