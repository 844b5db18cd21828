"""The lossless JSON text codec: the orjson fast path and the exact decoder agree on every
number, digit for digit."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from orchestrator.db import jsontext


def _exact(text: str) -> Any:
    """What the standard library reads with every number exact: the reference."""

    def number(token: str) -> float | Decimal:
        value = float(token)
        return value if Decimal(repr(value)) == Decimal(token) else Decimal(token)

    return json.loads(text, parse_float=number)


TEXTS = [
    '{"n": 3, "x": 0.1, "s": "plain"}',
    '{"sum": 0.30000000000000004, "third": 0.3333333333333333}',  # computed floats: exact
    '{"max": 18446744073709551615, "min": -9223372036854775808}',  # orjson's int range
    '{"past": 18446744073709551616, "below": -9223372036854775809}',  # just beyond it
    '{"id": 123456789012345678901, "amount": 1234567890.123456789}',
    "[0.000000000000001234, 100000000000000000.0, 12345678901234567.5]",
    '{"phone": "00441234567890123", "dots": "1.2.3.4.5.6.7.8.9.0"}',  # digits in strings
    '{"e": 12345678901234567890123456789e5, "f": 1.5e-7}',
    "[1" + "0" * 400 + "]",
]


@pytest.mark.parametrize("text", TEXTS)
def test_loads_gives_what_the_exact_decoder_gives(text: str) -> None:
    value = jsontext.loads(text)
    assert repr(value) == repr(_exact(text))  # same values and the same types
    assert jsontext.loads(jsontext.dumps(value).decode()) == value  # a round trip keeps them


def test_a_number_no_double_holds_is_a_decimal_and_computed_floats_stay_floats() -> None:
    value = jsontext.loads('{"a": 1234567890.123456789, "b": 0.30000000000000004}')
    assert value == {"a": Decimal("1234567890.123456789"), "b": 0.30000000000000004}
    assert isinstance(value["b"], float)


def test_text_beyond_the_decoders_is_undecodable() -> None:
    with pytest.raises(jsontext.UndecodableJson, match="nested too deeply"):
        jsontext.loads("[" * 100_000 + "]" * 100_000)
