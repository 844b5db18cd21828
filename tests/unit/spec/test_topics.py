"""Topics in pipeline files: `publish` keys, `subscribe` patterns, their checks across files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrator.spec import load_pipelines, parse_pipeline
from orchestrator.spec.topics import matches, routing_key_problem, topic_pattern_problem

ORDERS = """
pipeline: orders
steps:
  create:
    handler: app.orders:create
    publish: orders.created
    output: {type: object, properties: {id: {type: string}}, required: [id]}
"""

INVOICES = """
pipeline: invoices
subscribe: orders.*
steps:
  start:
    handler: app.invoices:start
    input: {type: object, properties: {id: {type: string}}, required: [id]}
"""


def _project(folder: Path, **files: str) -> list[str]:
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    result = load_pipelines(folder)
    return [d.format().replace(f"{folder}/", "") for d in result.diagnostics]


def test_publish_and_subscribe_take_one_or_a_list_and_enter_the_canonical_json() -> None:
    one = parse_pipeline(ORDERS)
    assert one.step("create").publish == ("orders.created",)
    assert one.to_json()["steps"]["create"]["publish"] == ["orders.created"]
    assert "subscribe" not in one.to_json()
    many = parse_pipeline(INVOICES.replace("subscribe: orders.*", "subscribe: [orders.*, '#']"))
    assert many.subscriptions == ("orders.*", "#")
    assert many.to_json()["subscribe"] == ["orders.*", "#"]


def test_a_pipeline_without_topics_keeps_its_hash() -> None:
    plain = parse_pipeline(ORDERS.replace("    publish: orders.created\n", ""))
    assert "publish" not in plain.to_json()["steps"]["create"]
    assert plain.spec_hash() != parse_pipeline(ORDERS).spec_hash()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "publish: orders.#",
            "5:14: error: invalid value 'orders.#'; use dot-separated words of letters, digits, "
            "'_' and '-' (no wildcards), e.g. orders.created",
        ),
        ("publish: [a, '.a']", "5:18: error: invalid value '.a'"),
        ("publish: [a.b, a.b]", "5:20: error: routing key 'a.b' is listed twice"),
    ],
)
def test_bad_routing_keys_are_reported_where_they_are(
    tmp_path: Path, text: str, message: str
) -> None:
    diagnostics = _project(tmp_path, orders=ORDERS.replace("publish: orders.created", text))
    assert any(d.startswith(f"orders.yaml:{message}") for d in diagnostics), diagnostics


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subscribe: 'orders.**'", "2:12: error: invalid topic pattern 'orders.**': '**'"),
        ("subscribe: 'orders..x'", "2:12: error: invalid value 'orders..x'"),
        ("subscribe: [a.*, a.*]", "2:18: error: pattern 'a.*' is listed twice"),
    ],
)
def test_bad_patterns_are_reported_where_they_are(tmp_path: Path, text: str, message: str) -> None:
    diagnostics = _project(tmp_path, invoices=INVOICES.replace("subscribe: orders.*", text))
    assert any(d.startswith(f"invoices.yaml:{message}") for d in diagnostics), diagnostics


def test_a_key_no_pipeline_subscribes_to_is_a_warning(tmp_path: Path) -> None:
    diagnostics = _project(tmp_path, orders=ORDERS, invoices=INVOICES.replace("orders.*", "x.*"))
    assert diagnostics == [
        "orders.yaml:5:14: warning: no pipeline here subscribes to 'orders.created': what "
        "this step publishes goes nowhere"
    ]


def test_matching_contracts_pass_and_a_broken_one_is_an_error_at_the_key(tmp_path: Path) -> None:
    assert _project(tmp_path, orders=ORDERS, invoices=INVOICES) == []
    broken = INVOICES.replace("id: {type: string}", "id: {type: integer}")
    result = load_pipelines([tmp_path / "orders.yaml", _write(tmp_path, "invoices", broken)])
    [diagnostic] = result.diagnostics
    assert diagnostic.severity == "error"
    assert (diagnostic.line, diagnostic.column) == (5, 14)
    assert diagnostic.message.startswith(
        "contract 'create' output -> 'invoices.start' input ('orders.created' reaches "
        "subscribe 'orders.*' in "
    )
    assert diagnostic.message.endswith("at /id: the output may be string; the input takes integer")
    assert [p.name for p in result.pipelines] == ["invoices"]


def test_a_pipeline_subscribing_to_its_own_key_is_warned(tmp_path: Path) -> None:
    looping = ORDERS.replace("pipeline: orders\n", "pipeline: orders\nsubscribe: '#'\n")
    [warning] = _project(tmp_path, orders=looping)
    assert "warning: pipeline 'orders' subscribes to '#' itself" in warning


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("pattern", "key", "matched"),
    [
        ("orders.*", "orders.created", True),
        ("orders.*", "orders", False),
        ("orders.*", "orders.eu.created", False),
        ("orders.#", "orders", True),
        ("orders.#", "orders.eu.created", True),
        ("#.created", "created", True),
        ("#", "anything.at.all", True),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a*b", "axxb", True),
        ("a*b", "ab", False),
    ],
)
def test_patterns_route_as_amqp_does(pattern: str, key: str, matched: bool) -> None:
    assert matches(pattern, key) is matched


def test_problems_name_the_rule() -> None:
    assert routing_key_problem("orders.created") is None
    assert routing_key_problem("a" * 256) == "routing key is 256 characters long; at most 255"
    assert routing_key_problem("a..b") == "routing key 'a..b' cannot contain two dots in a row"
    assert topic_pattern_problem("*.#") is None
    assert "adjacent wildcards" in (topic_pattern_problem("a.*#") or "")
