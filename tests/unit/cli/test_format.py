"""Tables, colour and human units of the operations' text output."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from orchestrator.cli.format import (
    Cell,
    age,
    colour_enabled,
    count,
    paint,
    percent,
    shorten,
    size,
    table,
    timestamp,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0s"), (59.9, "59s"), (61, "1m01s"), (3725, "1h02m"), (90000, "1d01h")],
)
def test_age(seconds: float | None, text: str) -> None:
    assert age(seconds) == text


@pytest.mark.parametrize(
    ("count_", "text"),
    [(None, "-"), (0, "0 B"), (1023, "1023 B"), (2048, "2.0 kB"), (150 * 1024**2, "150 MB")],
)
def test_size(count_: int | None, text: str) -> None:
    assert size(count_) == text


def test_small_helpers() -> None:
    assert percent(0.234) == "23%" and percent(None) == "-"
    assert count(1, "dead letter") == "1 dead letter"
    assert count(2, "dead letter") == "2 dead letters"
    assert shorten("a\nb   c", 10) == "a b c"
    assert shorten("x" * 20, 5) == "xxxx…"
    assert timestamp(None) == "-"
    assert timestamp(datetime(2030, 1, 1, tzinfo=UTC)).count(":") == 2


def test_table_aligns_with_and_without_colour() -> None:
    rows = [["fetch", Cell("12", "red")], ["sync", "3"]]
    plain = table(("step", "n"), rows, right=(1,))
    assert plain.splitlines() == ["step    n", "fetch  12", "sync    3"]
    coloured = table(("step", "n"), rows, right=(1,), colour=True)
    assert "\x1b[31m12\x1b[0m" in coloured
    stripped = coloured.replace("\x1b[31m", "").replace("\x1b[1m", "").replace("\x1b[0m", "")
    assert stripped == plain


def test_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert colour_enabled(Terminal())
    assert not colour_enabled(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_enabled(Terminal())
    assert paint("x", "red", False) == "x"
