"""Five-field cron expressions: parsing, validation and the next tick after a moment.

Fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or jan-dec), day of week
(0-7 or sun-sat; 0 and 7 are Sunday). Each field is ``*`` or a comma-separated list of
``N``, ``A-B``, ``*/S``, ``A-B/S`` or ``A/S`` (A to the field's maximum, every S). Names are
case-insensitive. ``@yearly``, ``@annually``, ``@monthly``, ``@weekly``, ``@daily``,
``@midnight`` and ``@hourly`` are accepted too.

As in classic cron, when both day of month and day of week are restricted (neither starts with
``*``), a day matches when either matches. Ticks are computed on the wall clock of the datetime
passed in: for an aware datetime, local times skipped by a daylight-saving jump never fire and
repeated local times fire once (at their first occurrence).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_SEARCH_YEARS = 9  # long enough for any valid expression (leap days recur within 8 years)
_MINUTE = timedelta(minutes=1)


class CronError(ValueError):
    """A cron expression that cannot be parsed or never fires; the message says why."""


@dataclass(frozen=True)
class _Field:
    label: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0

    def value(self, token: str) -> int:
        """Number or name -> integer within the field's range."""
        lowered = token.lower()
        if lowered in self.names:
            return self.names.index(lowered) + self.name_base
        if not token.isdigit():
            raise CronError(f"{self.label}: '{token}' is not a number{self._names_hint()}")
        number = int(token)
        if not self.low <= number <= self.high:
            raise CronError(f"{self.label}: {number} is out of range {self.low}-{self.high}")
        return number

    def _names_hint(self) -> str:
        return f" or a name ({', '.join(self.names)})" if self.names else ""


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, tuple(_MONTHS), 1),
    _Field("day of week", 0, 7, tuple(_WEEKDAYS), 0),
)


@dataclass(frozen=True)
class CronExpression:
    """A parsed expression. Weekdays use 0 for Sunday (7 is folded into 0)."""

    source: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    def matches(self, moment: datetime) -> bool:
        """True when `moment`'s wall-clock minute is a tick."""
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and self._day_matches(moment.date())
        )

    def next_after(self, after: datetime) -> datetime:
        """First tick strictly after `after`, in `after`'s time zone (naive stays naive)."""
        if after.tzinfo is None:
            return self._next_wall(_next_minute(after))
        candidate = _next_minute(after.replace(tzinfo=None))
        while True:
            wall = self._next_wall(candidate)
            aware = wall.replace(tzinfo=after.tzinfo)
            if _exists(aware) and aware.astimezone(UTC) > after.astimezone(UTC):
                return aware
            candidate = wall + _MINUTE

    def _day_matches(self, day: date) -> bool:
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def _next_wall(self, start: datetime) -> datetime:
        """First matching naive minute at or after `start`."""
        moment, limit = start, start.year + _SEARCH_YEARS
        while moment.year <= limit:
            if moment.month not in self.months:
                moment = _first_of_next_month(moment)
            elif not self._day_matches(moment.date()):
                moment = datetime.combine(moment.date() + timedelta(days=1), datetime.min.time())
            elif moment.hour not in self.hours:
                moment = moment.replace(minute=0) + timedelta(hours=1)
            elif moment.minute not in self.minutes:
                moment += _MINUTE
            else:
                return moment
        raise CronError(f"'{self.source}' never fires (no such date)")


def parse(expression: str) -> CronExpression:
    """Parse and check `expression`; raises `CronError` with a message naming the bad field."""
    text = _MACROS.get(expression.strip().lower(), expression)
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(parts)} in '{expression}'"
        )
    values = [_parse_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    parsed = CronExpression(
        source=expression,
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=frozenset(v % 7 for v in values[4]),
        any_day=parts[2].startswith("*"),
        any_weekday=parts[4].startswith("*"),
    )
    parsed.next_after(datetime(2000, 1, 1))  # refuses expressions that never fire (Feb 30)
    return parsed


def problem(expression: str) -> str | None:
    """Why `expression` is not a valid cron expression, or None when it is."""
    try:
        parse(expression)
    except CronError as exc:
        return str(exc)
    return None


def next_after(expression: str | CronExpression, after: datetime) -> datetime:
    """First tick of `expression` strictly after `after` (see `CronExpression.next_after`)."""
    parsed = parse(expression) if isinstance(expression, str) else expression
    return parsed.next_after(after)


def _parse_field(text: str, spec: _Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{spec.label}: empty item in '{text}'")
        values.update(_parse_item(item, spec))
    return frozenset(values)


def _parse_item(item: str, spec: _Field) -> range:
    body, slash, step_text = item.partition("/")
    step = _parse_step(step_text, spec) if slash else 1
    if body == "*":
        return range(spec.low, spec.high + 1, step)
    first_text, dash, last_text = body.partition("-")
    first = spec.value(first_text)
    last = spec.value(last_text) if dash else (spec.high if slash else first)
    if last < first:
        raise CronError(f"{spec.label}: range {body} goes backwards")
    return range(first, last + 1, step)


def _parse_step(text: str, spec: _Field) -> int:
    if not text.isdigit() or int(text) == 0:
        raise CronError(f"{spec.label}: step must be a positive number, got '{text}'")
    return int(text)


def _next_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0) + _MINUTE


def _first_of_next_month(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1)


def _exists(aware: datetime) -> bool:
    """False for wall-clock times skipped by a daylight-saving jump."""
    tz = aware.tzinfo
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == aware.replace(tzinfo=None)
