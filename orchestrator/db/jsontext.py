"""JSON text as PostgreSQL's jsonb holds it, without losing a digit.

jsonb stores numbers as ``numeric``: any number of digits. orjson (the fast path) reads every
number into a 64-bit int or a double, so ``123456789012345678901`` would arrive as
``1.2345678901234568e+20``. `loads` takes the fast path only when no number in the text can
lose digits (no run of 16 digits or more: a double keeps 15 significant digits exactly); other
texts, and those orjson refuses, are read by the standard library with exact ints, and with
floats only where a float gives back the same number (a `Decimal` otherwise). `dumps` writes
big ints and Decimals back digit for digit.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

_LONG_NUMBER = re.compile(r"\d[\d.]{15}")
"""16 characters of digits and dots: a number that a double may not hold exactly (or a long
digit string inside a JSON string, which the slow path reads just as well)."""


class UndecodableJson(ValueError):
    """Text that is valid for jsonb but that Python cannot read (nesting, huge numbers)."""


def loads(text: str) -> Any:
    """The JSON value of `text`, every number exact (see the module docstring)."""
    if _LONG_NUMBER.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # beyond a double (1e400 is stored as 401 digits anyway) or too deep
    try:
        return json.loads(text, parse_float=_exact_float)
    except (ValueError, RecursionError) as exc:
        raise UndecodableJson(_why(exc)) from None


def _exact_float(text: str) -> float | Decimal:
    value = float(text)
    exact = Decimal(text)
    return value if Decimal(repr(value)) == exact else exact


def _why(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply for the decoder"
    return f"JSON the decoder cannot read ({str(exc)[:200]})"


def dumps(value: Any) -> bytes:
    """`value` as JSON (bytes); ints of any size and finite Decimals keep every digit.
    Raises TypeError for what JSON cannot hold."""
    try:
        return orjson.dumps(value, default=_default)
    except TypeError as exc:
        if "64-bit" not in str(exc):
            raise
    return orjson.dumps(_big_ints(value), default=_default)


def _default(value: object) -> orjson.Fragment:
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _big_ints(value: Any) -> Any:
    """`value` with ints beyond 64 bits as raw JSON fragments (the slow path of `dumps`)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return orjson.Fragment(str(value).encode()) if value.bit_length() > 63 else value
    if isinstance(value, dict):
        return {k: _big_ints(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_big_ints(v) for v in value]
    return value
