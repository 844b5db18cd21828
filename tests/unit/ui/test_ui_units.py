"""The dashboard's pure parts: graph layout, access helpers, payload filters, event framing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.errors import UsageError
from orchestrator.ops.runs import parse_payload_filter
from orchestrator.state.applied import AppliedPipeline, AppliedStep
from orchestrator.ui import graph
from orchestrator.ui.live import event
from orchestrator.ui.security import is_loopback, parse_users


def pipeline(edges: dict[str, list[str]]) -> AppliedPipeline:
    preds: dict[str, list[str]] = {name: [] for name in edges}
    for source, targets in edges.items():
        for target in targets:
            preds[target].append(source)
    steps = tuple(
        AppliedStep(name, f"p__{name}", 30.0, 0.0, None, tuple(preds[name]), tuple(nexts))
        for name, nexts in edges.items()
    )
    return AppliedPipeline(
        "p", "h", datetime.now(UTC), steps[0].name, "p_dlq", steps, True, None, False, ()
    )


def test_layers_follow_the_longest_path_and_edges_point_right() -> None:
    diamond = pipeline({"a": ["b", "c"], "b": ["d"], "c": ["e"], "e": ["d"], "d": []})
    found = graph.layout(diamond)
    x = {box.step: box.x for box in found.boxes}
    assert x["a"] < x["b"] == x["c"] < x["e"] < x["d"]  # d waits for the longer branch
    assert len(found.edges) == 5
    for edge in found.edges:
        assert x[edge.source] < x[edge.target]
    assert found.width >= max(x.values()) + graph.BOX_WIDTH


def test_a_fan_out_stacks_its_branches() -> None:
    fan = pipeline({"a": ["b", "c", "d"], "b": [], "c": [], "d": []})
    found = graph.layout(fan)
    ys = sorted(box.y for box in found.boxes if box.step != "a")
    assert len(set(ys)) == 3 and found.height >= 3 * graph.BOX_HEIGHT


def test_payload_filters() -> None:
    assert parse_payload_filter("customer_id = 42") == {"customer_id": 42}
    assert parse_payload_filter('customer_id="42"') == {"customer_id": "42"}
    assert parse_payload_filter("order.state = open") == {"order": {"state": "open"}}
    assert parse_payload_filter("flag = true") == {"flag": True}
    for bad in ("42", "= 1", "a b = 1", "<script> = 1", "x ="):
        with pytest.raises(UsageError):
            parse_payload_filter(bad)


def test_loopback_and_users() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "example.org", "", None))
    assert parse_users("ops:pa:ss, bad ,x:y") == {"ops": "pa:ss", "x": "y"}


def test_events_carry_each_line_as_data() -> None:
    assert event("overview", "<p>\n1</p>") == "event: overview\ndata: <p>\ndata: 1</p>\n\n"
    assert event("overview", "") == ": keep-alive\n\n"
