"""`orchestrator graph`: steps, joins and topics in Graphviz dot and Mermaid."""

from __future__ import annotations

from orchestrator.cli.graph import dot, mermaid
from orchestrator.spec import parse_pipeline

PLAIN = """
pipeline: plain
steps:
  a: {handler: m:a, next: [b, c]}
  b: {handler: m:b, next: d}
  c: {handler: m:c, next: d}
  d: {handler: m:d}
"""

TOPICS = """
pipeline: orders
subscribe: ["shop.#", "returns.*"]
steps:
  create:
    handler: m:create
    publish: [orders.created, orders.any]
    next: bill
  bill:
    handler: m:bill
    publish: orders.billed
"""


def test_dot_marks_the_entry_and_the_joins_and_draws_every_edge() -> None:
    text = dot(parse_pipeline(PLAIN))
    assert text.startswith('digraph "plain" {\n')
    assert '  "a" [style=bold];' in text
    assert '  "d" [peripheries=2];' in text
    for edge in ('"a" -> "b"', '"a" -> "c"', '"b" -> "d"', '"c" -> "d"'):
        assert f"  {edge};" in text
    assert "dashed" not in text  # no topics, no topic nodes


def test_dot_draws_subscriptions_into_the_entry_and_published_keys_out_of_their_steps() -> None:
    lines = dot(parse_pipeline(TOPICS)).splitlines()
    assert '  "subscribe 0" [shape=note, style=dashed, label="shop.#"];' in lines
    assert '  "subscribe 0" -> "create" [style=dashed];' in lines
    assert '  "subscribe 1" -> "create" [style=dashed];' in lines
    published = {
        line.split('"')[3]: line.split('"')[1]
        for line in lines
        if line.startswith('  "') and '-> "publish' in line
    }
    labels = {line.split('"')[1]: line.split('"')[3] for line in lines if "label=" in line}
    assert {labels[node]: step for node, step in published.items()} == {
        "orders.created": "create",
        "orders.any": "create",
        "orders.billed": "bill",
    }
    assert '  "create" -> "bill";' in lines
    assert lines[-1] == "}"


def test_mermaid_draws_topics_as_dotted_links_with_ids_no_step_can_take() -> None:
    lines = mermaid(parse_pipeline(TOPICS)).splitlines()
    assert lines[0] == "flowchart LR"
    assert '  create(["create"])' in lines
    assert '  subscribe__0>"shop.#"] -.-> create' in lines
    assert '  subscribe__1>"returns.*"] -.-> create' in lines
    assert '  create -.-> publish__0>"orders.created"]' in lines
    assert '  create -.-> publish__1>"orders.any"]' in lines
    assert '  bill -.-> publish__2>"orders.billed"]' in lines
    assert "  create --> bill" in lines


def test_mermaid_without_topics_is_steps_and_edges_only() -> None:
    lines = mermaid(parse_pipeline(PLAIN)).splitlines()
    assert '  d[["d"]]' in lines
    assert not any("-.->" in line for line in lines)
