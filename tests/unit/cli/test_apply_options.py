"""apply's evolution flags, declared like every other command option."""

from __future__ import annotations

import pytest

from orchestrator.cli import build_parser
from orchestrator.cli.compile_cmd import _removed_steps
from orchestrator.cli.options import apply_environment
from orchestrator.errors import UsageError


def test_removed_steps_and_incompatible_contracts_come_from_the_command_line() -> None:
    parser = build_parser()
    assert _removed_steps(parser.parse_args(["apply"])) == "refuse"
    assert _removed_steps(parser.parse_args(["apply", "--to-dead-letter"])) == "dead_letter"
    drained = parser.parse_args(["apply", "--drain-first", "--allow-incompatible"])
    assert _removed_steps(drained) == "drain" and drained.allow_incompatible
    with pytest.raises((SystemExit, UsageError)):
        parser.parse_args(["apply", "--to-dead-letter", "--drain-first"])


def test_only_drain_first_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_APPLY_DRAIN_FIRST", "1")
    monkeypatch.setenv("ORCHESTRATOR_APPLY_TO_DEAD_LETTER", "1")
    monkeypatch.setenv("ORCHESTRATOR_APPLY_ALLOW_INCOMPATIBLE", "1")
    parser = build_parser()
    apply_environment(parser)
    args = parser.parse_args(["apply"])
    assert _removed_steps(args) == "drain" and not args.allow_incompatible
    assert _removed_steps(parser.parse_args(["apply", "--to-dead-letter"])) == "dead_letter"
