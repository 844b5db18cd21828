"""Durations as written in pipeline files, always normalised to float seconds.

Accepted: a non-negative number of seconds (``30``, ``0.5``), or a string of one or more
``<number><unit>`` parts: ``500ms``, ``30s``, ``5m``, ``2h``, ``7d``, ``1w``, ``1 day``,
``7 days``, ``2 hours``, ``1h30m``. Units are lowercase; months and years are not accepted
(their length varies). Parts go from the largest unit to the smallest, each unit once
(``1h30m``): ``30s 5m`` is refused rather than read as 330 s, and so is a duration shorter than
a millisecond (``0.1ms``): both are almost certainly typos.
"""

from __future__ import annotations

import itertools
import math
import re

_UNITS: dict[str, float] = {
    "ms": 0.001,
    "msec": 0.001,
    "msecs": 0.001,
    "millisecond": 0.001,
    "milliseconds": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
    "weeks": 604800.0,
}

# Longest first, so that "ms" wins over "m" and "minutes" over "min".
_UNIT_ALTERNATION = "|".join(sorted(_UNITS, key=len, reverse=True))
_PART = rf"[0-9]+(\.[0-9]+)? *({_UNIT_ALTERNATION})"

DURATION_PATTERN = rf"^ *{_PART}( *{_PART})* *$"
"""Regex a duration string must match (valid in Python and in JSON Schema / ECMA 262)."""

DURATION_HINT = "use e.g. 500ms, 30s, 5m, 2h, 7d, '1 day', '2 hours' or a number of seconds"

MAX_DURATION = 3650 * 86400.0
"""Longest accepted duration (ten years): anything longer is a typo."""

_FULL = re.compile(DURATION_PATTERN)
_PARTS = re.compile(rf"([0-9]+(?:\.[0-9]+)?) *({_UNIT_ALTERNATION})")


MIN_DURATION = 0.001
"""Shortest accepted duration above zero (one millisecond): anything shorter is a typo."""


def parse_duration(value: object) -> float:
    """Seconds represented by `value`; raises ValueError with a user-facing message."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a duration, got {type(value).__name__}; {DURATION_HINT}")
    seconds = _parse_text(value) if isinstance(value, str) else float(value)
    _check_range(seconds, value)
    return seconds


def parse_positive_duration(value: object) -> float:
    """Like `parse_duration`, but zero is refused."""
    seconds = parse_duration(value)
    if seconds == 0:
        raise ValueError(f"must be longer than 0 (got {value!r})")
    return seconds


def _parse_text(text: str) -> float:
    if not _FULL.match(text):
        raise ValueError(pattern_problem(text))
    parts = [(float(number), _UNITS[unit]) for number, unit in _PARTS.findall(text)]
    sizes = [size for _, size in parts]
    if any(later >= earlier for earlier, later in itertools.pairwise(sizes)):
        raise ValueError(
            f"invalid duration '{text}': write its parts from the largest unit to the "
            "smallest, each once (e.g. 1h30m); a list of durations is not a duration"
        )
    return sum(number * size for number, size in parts)


def pattern_problem(text: str) -> str:
    """Why `text` does not read as a duration, said for the mistake it most likely is."""
    try:
        float(text)
    except ValueError:
        return f"invalid duration '{text}'; {DURATION_HINT}"
    return (
        f"invalid duration '{text}': a quoted number is text, not seconds; "
        f"write {text.strip()} without quotes, or {text.strip()}s"
    )


def _check_range(seconds: float, original: object) -> None:
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {original!r}; {DURATION_HINT}")
    if seconds < 0:
        raise ValueError(f"a duration must not be negative (got {original})")
    if 0 < seconds < MIN_DURATION:
        raise ValueError(
            f"duration {original!r} is shorter than 1ms, almost certainly a typo "
            "(durations are in seconds: 0.5 is 500ms)"
        )
    if seconds > MAX_DURATION:
        raise ValueError(f"duration {original!r} is longer than the maximum of 3650 days")


def format_duration(seconds: float) -> str:
    """Compact human form for messages: 0.25 -> '250ms', 90 -> '1m30s', 86400 -> '1d'."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    parts: list[str] = []
    rest = seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{int(count)}{unit}")
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)
