"""The step graph's own algorithms agree with networkx's on random graphs."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from orchestrator.spec.graph import StepGraph


def _random(seed: int) -> tuple[StepGraph, nx.DiGraph]:
    rng = random.Random(seed)
    names = [f"s{i}" for i in range(rng.randint(1, 12))]
    ours, theirs = StepGraph(names), nx.DiGraph()
    theirs.add_nodes_from(names)
    for _ in range(rng.randint(0, 20)):
        u, v = rng.choice(names), rng.choice(names)
        ours.add_edge(u, v)
        theirs.add_edge(u, v)
    return ours, theirs


@pytest.mark.parametrize("seed", range(200))
def test_components_descendants_cycles_and_order_match_networkx(seed: int) -> None:
    ours, theirs = _random(seed)
    groups = sorted(sorted(c) for c in ours.strongly_connected())
    assert groups == sorted(sorted(c) for c in nx.strongly_connected_components(theirs))
    for name in ours.nodes:
        assert ours.descendants(name) == nx.descendants(theirs, name) | (
            {name} if ours.has_edge(name, name) or _on_cycle(theirs, name) else set()
        )
    for group in ours.strongly_connected():
        start = min(group, key=ours.index.__getitem__)
        if len(group) > 1 or ours.has_edge(start, start):
            loop = ours.cycle_from(start, group)
            edges = list(zip(loop, [*loop[1:], loop[0]], strict=True))
            assert loop and all(theirs.has_edge(u, v) for u, v in edges)
    if nx.is_directed_acyclic_graph(theirs):
        expected = nx.lexicographical_topological_sort(theirs, key=ours.index.__getitem__)
        assert ours.topological_order() == tuple(expected)


def _on_cycle(graph: nx.DiGraph, name: str) -> bool:
    return any(graph.has_edge(d, name) for d in nx.descendants(graph, name))
