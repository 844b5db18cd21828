from __future__ import annotations

import re

import pytest

from orchestrator.spec.durations import (
    DURATION_PATTERN,
    format_duration,
    parse_duration,
    parse_positive_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("7d", 604800),
        ("1w", 604800),
        ("1 day", 86400),
        ("7 days", 604800),
        ("2 hours", 7200),
        ("1 minute", 60),
        ("90 seconds", 90),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1.5h", 5400),
        ("0s", 0),
        (" 10 s ", 10),
        (30, 30),
        (0.25, 0.25),
    ],
)
def test_parses(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    if isinstance(text, str):
        assert re.match(DURATION_PATTERN, text), "the schema pattern accepts what the parser does"


@pytest.mark.parametrize("bad", ["5 minutez", "5", "m", "-5s", "5M", "1 month", "1,5h", "", "ms5"])
def test_rejects_bad_text(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)
    assert not re.match(DURATION_PATTERN, bad)


@pytest.mark.parametrize("bad", [True, None, [], {}])
def test_rejects_other_types(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)


def test_rejects_negative_infinite_and_huge() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration(-1)
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(float("inf"))
    with pytest.raises(ValueError, match="maximum"):
        parse_duration("99999 days")


def test_positive() -> None:
    assert parse_positive_duration("1ms") == pytest.approx(0.001)
    with pytest.raises(ValueError, match="longer than 0"):
        parse_positive_duration("0s")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (30, "30s"), (90, "1m30s"), (300, "5m"), (86400, "1d"), (0, "0s")],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
