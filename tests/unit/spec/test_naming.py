from __future__ import annotations

import re

import pytest

from orchestrator.spec import naming


@pytest.mark.parametrize("name", ["a", "work_orders", "step2", "a1_b2_c3"])
def test_valid_names(name: str) -> None:
    assert naming.is_valid_name(name)
    assert naming.name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("Work", "lowercase"),
        ("1abc", "lowercase"),
        ("a-b", "lowercase"),
        ("a__b", "reserved"),
        ("a_", "must not end"),
        ("_a", "lowercase"),
    ],
)
def test_invalid_names(name: str, reason: str) -> None:
    assert not naming.is_valid_name(name)
    problem = naming.name_problem(name)
    assert problem is not None and reason in problem


def test_queue_names() -> None:
    assert naming.step_queue_name("work_orders", "barcode") == "work_orders__barcode"
    assert naming.dead_letter_queue_name("work_orders") == "work_orders_dlq"
    assert naming.dead_letter_queue_name("work_orders", "failed") == "failed"


def test_split_is_the_inverse_of_step_queue_name() -> None:
    assert naming.split_step_queue_name("work_orders__barcode") == ("work_orders", "barcode")
    assert naming.split_step_queue_name("work_orders_dlq") is None
    assert naming.split_step_queue_name("a__b__c") is None


def test_length_limit() -> None:
    fits = "q" * naming.MAX_QUEUE_NAME_LENGTH
    assert naming.queue_name_problem(fits) is None
    problem = naming.queue_name_problem(fits + "x")
    assert problem is not None and "48 characters" in problem and "47" in problem


def test_pattern_is_plain_enough_for_json_schema() -> None:
    assert "(?" not in naming.NAME_PATTERN  # no lookarounds: same meaning in ECMA 262
    assert re.fullmatch(naming.NAME_PATTERN, "work_orders")
