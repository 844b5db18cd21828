"""Argument types of the operations' commands, and dead-letter id lists."""

from __future__ import annotations

import argparse

import pytest

from orchestrator.cli.arguments import duration, positive_duration, positive_int
from orchestrator.errors import UsageError
from orchestrator.ops.dlq import parse_id, parse_ids


def test_durations() -> None:
    assert duration("7d") == 7 * 86400
    assert duration("90") == 90
    assert duration("1h30m") == 5400
    assert positive_duration("0.5") == 0.5
    for bad in ("5x", "-1", "soon", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="longer than 0"):
        positive_duration("0")


def test_counts() -> None:
    assert positive_int("3") == 3
    for bad in ("0", "-2", "x", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)


def test_dead_letter_ids() -> None:
    assert parse_ids(["12", "13,14", "20-22", "12"]) == (12, 13, 14, 20, 21, 22)
    assert parse_id("42") == 42
    for text in ("x", "-1", "1e3", str(2**63)):
        with pytest.raises(UsageError):
            parse_id(text)
    for bad in (["x"], ["5-3"], ["1-"], [","], [str(2**63)]):
        with pytest.raises(UsageError):
            parse_ids(bad)
