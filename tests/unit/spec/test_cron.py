from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from orchestrator.spec import cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/5 * * * *", "2024-01-01T10:02:30", "2024-01-01T10:05:00"),
        ("*/5 * * * *", "2024-01-01T10:05:00", "2024-01-01T10:10:00"),  # strictly after
        ("0 6 * * *", "2024-01-01T06:00:00", "2024-01-02T06:00:00"),
        ("0 6 * * mon-fri", "2024-01-05T07:00:00", "2024-01-08T06:00:00"),  # Fri -> Mon
        ("30 2 1 * *", "2024-01-15T00:00:00", "2024-02-01T02:30:00"),
        ("0 0 29 feb *", "2024-03-01T00:00:00", "2028-02-29T00:00:00"),
        ("0 9 1-7 * sun", "2024-01-08T00:00:00", "2024-01-14T09:00:00"),  # dom OR dow
        ("0 0 * * 7", "2024-01-01T00:00:00", "2024-01-07T00:00:00"),  # 7 is Sunday
        ("15,45 8-10/2 * * *", "2024-01-01T08:50:00", "2024-01-01T10:15:00"),
        ("5/20 * * * *", "2024-01-01T00:26:00", "2024-01-01T00:45:00"),
        ("0 0 1 JAN *", "2024-06-01T00:00:00", "2025-01-01T00:00:00"),
        ("@hourly", "2024-01-01T10:00:00", "2024-01-01T11:00:00"),
        ("@weekly", "2024-01-01T00:00:00", "2024-01-07T00:00:00"),
        ("0 0 31 * *", "2024-04-01T00:00:00", "2024-05-31T00:00:00"),
        ("59 23 31 12 *", "2024-12-31T23:59:00", "2025-12-31T23:59:00"),
    ],
)
def test_next_after(expression: str, after: str, expected: str) -> None:
    assert cron.next_after(expression, at(after)) == at(expected)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "5 fields"),
        ("* * * * * *", "5 fields"),
        ("60 * * * *", "minute: 60 is out of range 0-59"),
        ("* 24 * * *", "hour: 24 is out of range 0-23"),
        ("* * 0 * *", "day of month: 0 is out of range 1-31"),
        ("* * * 13 *", "month: 13 is out of range 1-12"),
        ("* * * * 8", "day of week: 8 is out of range 0-7"),
        ("* * * * mnd", "day of week: 'mnd' is not a number or a name"),
        ("*/0 * * * *", "step must be a positive number"),
        ("5-1 * * * *", "goes backwards"),
        ("1,,2 * * * *", "empty item"),
        ("0 0 30 2 *", "never fires"),
        ("@fortnightly", "5 fields"),
    ],
)
def test_invalid(expression: str, message: str) -> None:
    problem = cron.problem(expression)
    assert problem is not None and message in problem
    with pytest.raises(cron.CronError):
        cron.parse(expression)


def test_aware_datetimes_use_their_wall_clock() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    after = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    tick = cron.next_after("0 6 * * *", after.astimezone(berlin))
    assert tick == datetime(2024, 1, 2, 6, 0, tzinfo=berlin)
    assert tick.astimezone(UTC) == datetime(2024, 1, 2, 5, 0, tzinfo=UTC)


def test_skipped_local_time_does_not_fire() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # 2024-03-31 02:00 -> 03:00
    tick = cron.next_after("30 2 * * *", datetime(2024, 3, 30, 12, 0, tzinfo=berlin))
    assert tick == datetime(2024, 4, 1, 2, 30, tzinfo=berlin)


def test_repeated_local_time_fires_once() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # 2024-10-27 03:00 -> 02:00
    first = cron.next_after("30 2 * * *", datetime(2024, 10, 27, 0, 0, tzinfo=berlin))
    assert first.astimezone(UTC) == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)
    second = cron.next_after("30 2 * * *", first)
    assert second == datetime(2024, 10, 28, 2, 30, tzinfo=berlin)


def test_matches() -> None:
    parsed = cron.parse("0 6 * * mon")
    assert parsed.matches(at("2024-01-01T06:00:00"))
    assert not parsed.matches(at("2024-01-02T06:00:00"))
