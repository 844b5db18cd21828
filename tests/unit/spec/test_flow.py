"""Flow-control keys: rates, group keys, inheritance from defaults, canonical JSON."""

from __future__ import annotations

import pytest

from orchestrator.spec.flow import burst_of, check_group_key, group_key_path, parse_rate
from orchestrator.spec.models import Pipeline


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("20/s", 20.0), ("600/min", 10.0), ("36 / h", 0.01), ("1.5/second", 1.5), ("3/minute", 0.05)],
)
def test_rates_are_starts_per_second(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("20/d", "invalid rate '20/d'"),
        ("fast", "invalid rate 'fast'"),
        ("0/s", "must be above zero"),
        ("2000000/s", "above the highest accepted rate"),
        (20, "not a number"),
    ],
)
def test_bad_rates_say_why(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rate(value)


def test_burst_is_the_per_second_figure_at_least_one() -> None:
    assert [burst_of(20.0), burst_of(2.5), burst_of(0.1)] == [20, 2, 1]


def test_group_keys_are_dotted_payload_paths() -> None:
    assert check_group_key("customer.id") == "customer.id"
    assert group_key_path("customer.id") == ["customer", "id"]
    for bad in ("", "a..b", "a b", ".a", "x" * 64):
        with pytest.raises(ValueError, match="invalid group_by key"):
            check_group_key(bad)


def _pipeline(**sap: object) -> Pipeline:
    return Pipeline.model_validate(
        {
            "pipeline": "shop",
            "defaults": {"rate_limit": "5/s", "max_in_flight": 3},
            "steps": {"a": {"handler": "m:f", "next": ["sap"]}, "sap": {"handler": "m:f", **sap}},
        }
    )


def test_steps_inherit_limits_from_defaults_and_override_them() -> None:
    inherited = _pipeline().step("sap")
    assert inherited.rate_limit is not None
    assert (inherited.rate_limit.per_second, inherited.max_in_flight) == (5.0, 3)
    assert inherited.rate_limit.bucket("shop", "sap") == "shop.sap"
    own = _pipeline(rate_limit={"name": "erp", "rate": "120/min"}, group_by="c").step("sap")
    assert own.rate_limit is not None
    assert (own.rate_limit.per_second, own.rate_limit.burst) == (2.0, 2)
    assert own.rate_limit.bucket("shop", "sap") == "erp"
    assert own.group_by == "c"


def test_unset_flow_keys_stay_out_of_the_canonical_json() -> None:
    plain = Pipeline.model_validate({"pipeline": "p", "steps": {"a": {"handler": "m:f"}}})
    step = plain.to_json()["steps"]["a"]
    assert not {"rate_limit", "max_in_flight", "group_by", "max_waiting"} & set(step)
    assert "dedupe_window" not in plain.to_json()
    limited = _pipeline(max_waiting=10).to_json()["steps"]["sap"]
    assert limited["rate_limit"] == {"rate": "5/s", "name": None}
    assert limited["max_waiting"] == 10
