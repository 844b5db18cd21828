"""The step graph: edges from ``next`` and ``after``, and the checks that make it runnable.

Edges are the union of ``next`` (declared on the predecessor) and ``after`` (declared on the
successor); both may name the same edge. A runnable graph has exactly one entry step (no
predecessors), no cycles, every step reachable from the entry, and no reference to an unknown
step. The checks work on plain `StepLinks`, so they run on raw YAML data even when other parts
of a file are invalid, and report every problem as an `Issue` with its document path.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from orchestrator.spec.diagnostics import DocPath, Issue
from orchestrator.spec.suggest import closest, did_you_mean

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


class StepGraph:
    """Steps (in file order) and the edges between them; a pipeline has tens of steps, so
    plain dicts do (no graph library to import when a worker starts)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.index = {name: i for i, name in enumerate(names)}
        self.succ: dict[str, dict[str, None]] = {name: {} for name in names}
        self.pred: dict[str, dict[str, None]] = {name: {} for name in names}

    @property
    def nodes(self) -> list[str]:
        return list(self.index)

    def add_edge(self, u: str, v: str) -> None:
        self.succ[u][v] = None
        self.pred[v][u] = None

    def has_edge(self, u: str, v: str) -> bool:
        return v in self.succ[u]

    def descendants(self, start: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.succ[start])
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.succ[node])
        return seen

    def strongly_connected(self) -> list[set[str]]:
        """Tarjan's algorithm, iterative: the strongly connected groups of steps."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        groups: list[set[str]] = []
        for root in self.index:
            if root in index:
                continue
            work = [(root, iter(self.succ[root]))]
            index[root] = low[root] = len(index)
            stack.append(root)
            on_stack.add(root)
            while work:
                node, children = work[-1]
                child = next(children, None)
                if child is None:
                    work.pop()
                    if work:
                        parent = work[-1][0]
                        low[parent] = min(low[parent], low[node])
                    if low[node] == index[node]:
                        group = set()
                        while True:
                            member = stack.pop()
                            on_stack.discard(member)
                            group.add(member)
                            if member == node:
                                break
                        groups.append(group)
                elif child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(self.succ[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
        return groups

    def cycle_from(self, start: str, within: set[str]) -> list[str]:
        """The first cycle a depth-first walk from `start` inside `within` meets, as the list
        of its steps from where it closes."""
        path = [start]
        on_path = {start}
        work = [iter([v for v in self.succ[start] if v in within])]
        done: set[str] = set()
        while work:
            child = next(work[-1], None)
            if child is None:
                work.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
            elif child in on_path:
                return path[path.index(child) :]
            elif child not in done:
                path.append(child)
                on_path.add(child)
                work.append(iter([v for v in self.succ[child] if v in within]))
        return []

    def topological_order(self) -> tuple[str, ...]:
        """Kahn's algorithm, ties broken by file order (the graph must be acyclic)."""
        waiting = {n: len(self.pred[n]) for n in self.index}
        ready = [(self.index[n], n) for n, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            _, node = heapq.heappop(ready)
            order.append(node)
            for child in self.succ[node]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(ready, (self.index[child], child))
        return tuple(order)


def build_graph(
    steps: Mapping[str, StepLinks], *, assume_typos: bool = False
) -> tuple[StepGraph, dict[tuple[str, str], DocPath]]:
    """Directed graph of known references, plus where each edge was first declared.

    With `assume_typos`, an unknown reference close to a step name counts as that step.
    """
    graph = StepGraph(list(steps))
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


def cycles(graph: StepGraph, declared: Mapping[tuple[str, str], DocPath]) -> list[Issue]:
    """One issue per cycle (per strongly connected group of steps), shown as ``a -> b -> a``."""
    issues = []
    note = "" if _entries(graph) else " (and no entry step: every step has a predecessor)"
    groups = graph.strongly_connected()
    for component in sorted(groups, key=lambda c: min(graph.index[n] for n in c)):
        start = min(component, key=graph.index.__getitem__)
        if len(component) == 1 and not graph.has_edge(start, start):
            continue
        loop = graph.cycle_from(start, component)
        closing = declared[(loop[-1], loop[0])]
        issues.append(Issue(closing, "cycle: " + " -> ".join([*loop, loop[0]]) + note))
    return issues


def entry_and_reachability(graph: StepGraph) -> list[Issue]:
    """Exactly one entry step, and every step reachable from an entry.

    A graph without entry step always has a cycle (or a misspelt reference that closes one),
    which is reported instead.
    """
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
    reachable = set(entries).union(*(graph.descendants(e) for e in entries))
    in_cycle = {n for c in graph.strongly_connected() if len(c) > 1 for n in c}
    for name in graph.nodes:
        if name not in reachable and name not in in_cycle and not graph.has_edge(name, name):
            message = f"step '{name}' is unreachable from the entry step '{entries[0]}'"
            issues.append(Issue(("steps", name), message, "key"))
    return issues


def _entries(graph: StepGraph) -> list[str]:
    return [n for n in graph.nodes if not graph.pred[n]]


def topology(graph: StepGraph) -> Topology:
    """Entry, topological order and neighbours of a valid graph (ties broken by file order)."""
    index = graph.index
    order = graph.topological_order()
    return Topology(
        entry=order[0],
        order=order,
        predecessors={n: tuple(sorted(graph.pred[n], key=index.__getitem__)) for n in graph.nodes},
        successors={n: tuple(sorted(graph.succ[n], key=index.__getitem__)) for n in graph.nodes},
    )
