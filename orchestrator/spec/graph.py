"""The step graph: edges from ``next`` and ``after``, and the checks that make it runnable.

Edges are the union of ``next`` (declared on the predecessor) and ``after`` (declared on the
successor); both may name the same edge. A runnable graph has exactly one entry step (no
predecessors), no cycles, every step reachable from the entry, and no reference to an unknown
step. The checks work on plain `StepLinks`, so they run on raw YAML data even when other parts
of a file are invalid, and report every problem as an `Issue` with its document path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from orchestrator.spec.diagnostics import DocPath, Issue
from orchestrator.spec.suggest import closest, did_you_mean

if TYPE_CHECKING:
    import networkx as nx

LinkField = Literal["next", "after"]


@dataclass(frozen=True)
class StepLinks:
    """The references one step declares. `complete` is False when some could not be read."""

    next: Sequence[str] = ()
    after: Sequence[str] = ()
    complete: bool = True


@dataclass(frozen=True)
class Topology:
    """The shape of a valid graph. Tuples are in file order; `order` is topological."""

    entry: str
    order: tuple[str, ...]
    predecessors: Mapping[str, tuple[str, ...]]
    successors: Mapping[str, tuple[str, ...]]


@dataclass
class GraphReport:
    """Result of `analyze`: the topology when the graph is valid, else the issues."""

    topology: Topology | None = None
    issues: list[Issue] = field(default_factory=list)


def analyze(steps: Mapping[str, StepLinks]) -> GraphReport:
    """Check the graph of `steps` (in file order) and compute its topology when valid."""
    issues = unknown_references(steps)
    graph, declared = build_graph(steps)
    issues += cycles(graph, declared)
    complete = all(links.complete for links in steps.values())
    if complete:
        # A misspelt reference counts as the edge it was meant to be, so one typo is
        # reported once rather than again as an extra entry step or an unreachable step.
        intended, _ = build_graph(steps, assume_typos=True)
        issues += entry_and_reachability(intended)
    if issues or not steps or not complete:
        return GraphReport(issues=issues)
    return GraphReport(topology=topology(graph))


def unknown_references(steps: Mapping[str, StepLinks]) -> list[Issue]:
    """One issue per ``next``/``after`` entry that names no step of this pipeline."""
    return [
        Issue(path, f"unknown step '{target}' in {kind}{did_you_mean(target, steps)}")
        for path, kind, target, _ in _references(steps)
        if target not in steps
    ]


def build_graph(
    steps: Mapping[str, StepLinks], *, assume_typos: bool = False
) -> tuple[nx.DiGraph, dict[tuple[str, str], DocPath]]:
    """Directed graph of known references, plus where each edge was first declared.

    With `assume_typos`, an unknown reference close to a step name counts as that step.
    """
    import networkx as nx

    graph = nx.DiGraph()
    for index, name in enumerate(steps):
        graph.add_node(name, index=index)
    declared: dict[tuple[str, str], DocPath] = {}
    for path, kind, written, owner in _references(steps):
        target = closest(written, steps) if assume_typos and written not in steps else written
        if target is not None and target in steps:
            edge = (owner, target) if kind == "next" else (target, owner)
            declared.setdefault(edge, path)
            graph.add_edge(*edge)
    return graph, declared


def _references(steps: Mapping[str, StepLinks]) -> list[tuple[DocPath, LinkField, str, str]]:
    """(path, field, referenced step, declaring step) for every reference, in file order."""
    found: list[tuple[DocPath, LinkField, str, str]] = []
    for owner, links in steps.items():
        for kind, targets in (("next", links.next), ("after", links.after)):
            for i, target in enumerate(targets):
                found.append((("steps", owner, kind, i), kind, target, owner))  # type: ignore[arg-type]
    return found


def cycles(graph: nx.DiGraph, declared: Mapping[tuple[str, str], DocPath]) -> list[Issue]:
    """One issue per cycle (per strongly connected group of steps), shown as ``a -> b -> a``."""
    import networkx as nx

    issues = []
    note = "" if _entries(graph) else " (and no entry step: every step has a predecessor)"
    for component in nx.strongly_connected_components(graph):
        start = min(component, key=lambda n: graph.nodes[n]["index"])
        if len(component) == 1 and not graph.has_edge(start, start):
            continue
        loop = [u for u, _ in nx.find_cycle(graph.subgraph(component), source=start)]
        closing = declared[(loop[-1], start)]
        issues.append(Issue(closing, "cycle: " + " -> ".join([*loop, start]) + note))
    return issues


def entry_and_reachability(graph: nx.DiGraph) -> list[Issue]:
    """Exactly one entry step, and every step reachable from an entry.

    A graph without entry step always has a cycle (or a misspelt reference that closes one),
    which is reported instead.
    """
    import networkx as nx

    entries = _entries(graph)
    if not entries:
        return []
    issues = [
        Issue(
            ("steps", extra),
            f"step '{extra}' has no predecessor, but '{entries[0]}' is already the entry step "
            "(a pipeline has exactly one; connect it with next or after)",
            "key",
        )
        for extra in entries[1:]
    ]
    reachable = set(entries).union(*(nx.descendants(graph, e) for e in entries))
    in_cycle = {n for c in nx.strongly_connected_components(graph) if len(c) > 1 for n in c}
    for name in graph.nodes:
        if name not in reachable and name not in in_cycle and not graph.has_edge(name, name):
            message = f"step '{name}' is unreachable from the entry step '{entries[0]}'"
            issues.append(Issue(("steps", name), message, "key"))
    return issues


def _entries(graph: nx.DiGraph) -> list[str]:
    return [n for n in graph.nodes if graph.in_degree(n) == 0]


def topology(graph: nx.DiGraph) -> Topology:
    """Entry, topological order and neighbours of a valid graph (ties broken by file order)."""
    import networkx as nx

    index = nx.get_node_attributes(graph, "index")
    by_file = sorted(graph.nodes, key=index.__getitem__)
    order = tuple(nx.lexicographical_topological_sort(graph, key=index.__getitem__))
    return Topology(
        entry=order[0],
        order=order,
        predecessors={n: tuple(sorted(graph.predecessors(n), key=index.get)) for n in by_file},
        successors={n: tuple(sorted(graph.successors(n), key=index.get)) for n in by_file},
    )
