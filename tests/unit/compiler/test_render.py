"""Templates: sandboxed, strict, and nothing reaches SQL without a quoting filter."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from orchestrator.compiler.desired import PartitionLayout, QueueState, Storage
from orchestrator.compiler.render import (
    UnquotedValue,
    UnsafeName,
    quote_ident,
    quote_jsonb,
    quote_literal,
    quote_queue,
    quote_queue_table,
    render,
    render_string,
)


def test_a_value_without_a_quoting_filter_is_refused() -> None:
    with pytest.raises(UnquotedValue, match="without a quoting filter"):
        render_string("SELECT {{ name }}", name="orders")


def test_undefined_variables_are_errors() -> None:
    with pytest.raises(UndefinedError):
        render_string("SELECT {{ missing | literal }}")


def test_the_sandbox_refuses_internals() -> None:
    with pytest.raises(SecurityError):
        render_string("{{ ''.__class__.__mro__ | literal }}")


@pytest.mark.parametrize(
    "bad",
    ['a"b', "Orders", "a;b", "a b", "x" * 64, "", "1abc", "wörker", "a-b", "a\x00"],
)
def test_identifiers_are_validated(bad: str) -> None:
    with pytest.raises(UnsafeName):
        quote_ident(bad)


def test_identifiers_are_quoted() -> None:
    assert quote_ident("orders__ship") == '"orders__ship"'
    assert quote_ident("x" * 63) == '"' + "x" * 63 + '"'


@pytest.mark.parametrize(
    "bad",
    [
        "orders'; DROP TABLE pgmq.meta; --",
        "Orders__ship",
        "orders__ship__x",
        "orders___ship",
        "orders_",
        "a" * 48,
        "orders__",
        "__ship",
    ],
)
def test_queue_names_are_validated(bad: str) -> None:
    with pytest.raises(UnsafeName):
        quote_queue(bad)
    with pytest.raises(UnsafeName):
        quote_queue_table(bad)


def test_queue_names_and_tables() -> None:
    assert quote_queue("orders__ship") == "'orders__ship'"
    assert quote_queue("orders_dlq") == "'orders_dlq'"
    assert quote_queue_table("orders__ship") == 'pgmq."q_orders__ship"'
    assert quote_queue_table("orders__ship", "a") == 'pgmq."a_orders__ship"'
    with pytest.raises(UnsafeName):
        quote_queue_table("orders__ship", "q; DROP")


def test_literals() -> None:
    assert quote_literal(None) == "NULL"
    assert quote_literal(True) == "true"
    assert quote_literal(7) == "7"
    assert quote_literal(0.25) == "0.25"
    assert quote_literal("it's") == "'it''s'"
    assert quote_literal("a\\b'") == "E'a\\\\b'''"
    with pytest.raises(ValueError, match="NUL"):
        quote_literal("a\x00b")
    with pytest.raises(ValueError):
        quote_literal(float("nan"))
    with pytest.raises(TypeError):
        quote_literal(object())
    assert quote_jsonb({"b": 1, "a": "x'y"}) == """'{"a":"x''y","b":1}'::jsonb"""


def test_create_queue_statements() -> None:
    plain = QueueState("orders__ship", "orders", "ship", Storage(notify_ms=250))
    assert render("create_queue", queue=plain) == (
        "SELECT pgmq.create('orders__ship');\n"
        "SELECT pgmq.enable_notify_insert('orders__ship', 250);"
    )
    partitioned = Storage(PartitionLayout("time", 86400.0, None), notify_ms=None)
    queue = QueueState("orders_dlq", "orders", None, partitioned)
    assert render("create_queue", queue=queue) == (
        "SELECT pgmq.create_partitioned('orders_dlq', '1 days', '100 years');"
    )
    unlogged = QueueState("orders__bill", "orders", "bill", Storage(unlogged=True))
    assert render("create_queue", queue=unlogged) == "SELECT pgmq.create_unlogged('orders__bill');"


def test_a_crafted_queue_name_never_renders() -> None:
    evil = QueueState("x'); DROP SCHEMA pgmq CASCADE; --", "x", "y", Storage())
    with pytest.raises(UnsafeName):
        render("create_queue", queue=evil)
    with pytest.raises(UnsafeName):
        render("drop_queue", name=evil.name)
    with pytest.raises(UnsafeName):
        render("grant_worker", role='r"; --', tables=[], sequences=[])
