"""Flow-control settings as written in pipeline files: rates and group keys.

A rate is ``N/s``, ``N/min`` or ``N/h`` (also ``N/second``, ``N/minute``, ``N/hour``), with
N a positive number: handler starts per unit of time, all workers together. Its burst (tokens
a rested bucket holds) is the per-second figure, at least one. A group key is a payload key,
dotted for nested objects (``customer.id``).
"""

from __future__ import annotations

import math
import re

_RATE_UNITS: dict[str, float] = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}

RATE_PATTERN = (
    r"^ *[0-9]+(\.[0-9]+)? */ *(" + "|".join(sorted(_RATE_UNITS, key=len, reverse=True)) + r") *$"
)
"""Regex a rate string must match (valid in Python and in JSON Schema / ECMA 262)."""

RATE_HINT = "use N/s, N/min or N/h, e.g. 20/s or 100/min"

MAX_RATE = 1_000_000.0
"""Highest rate accepted, per second: anything above is a typo, not a limit."""

GROUP_KEY_PATTERN = r"^[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63}){0,7}$"
"""A payload key path: up to eight dotted parts of letters, digits, '_' and '-'."""

GROUP_KEY_HINT = "use a payload key such as customer_id, or a dotted path such as customer.id"

_RATE = re.compile(RATE_PATTERN)
_GROUP_KEY = re.compile(GROUP_KEY_PATTERN)


def parse_rate(value: object) -> float:
    """Starts per second given by the rate text `value`; ValueError with a user-facing message."""
    if not isinstance(value, str):
        raise ValueError(f"expected a rate such as 20/s, not {_kind(value)}; {RATE_HINT}")
    if not _RATE.match(value):
        raise ValueError(f"invalid rate '{value}'; {RATE_HINT}")
    count, unit = (part.strip() for part in value.split("/"))
    per_second = float(count) / _RATE_UNITS[unit]
    if not per_second > 0 or not math.isfinite(per_second):
        raise ValueError(f"rate '{value}' must be above zero")
    if per_second > MAX_RATE:
        raise ValueError(f"rate '{value}' is above the highest accepted rate, {MAX_RATE:g}/s")
    return per_second


def burst_of(per_second: float) -> int:
    """Tokens a rested bucket of `per_second` holds: the per-second figure, at least one."""
    return max(1, math.floor(per_second))


def check_group_key(value: str) -> str:
    """`value` if it is a plausible payload key path, else ValueError."""
    if not _GROUP_KEY.match(value):
        raise ValueError(f"invalid group_by key '{value}'; {GROUP_KEY_HINT}")
    return value


def group_key_path(value: str) -> list[str]:
    """The parts of a group key path (what ``#>>`` takes in SQL)."""
    return value.split(".")


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"
