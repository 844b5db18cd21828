"""A pipeline's step graph laid out for SVG, on the server.

The graph is the one `apply` stored (each step's predecessors and successors, from the
compiler's networkx graph) read back through `state.applied`. The layout is the classic layered
one for a DAG: a step's layer is the length of the longest path from the entry step to it, so
every edge points right; within a layer, steps are ordered by the mean position of their
predecessors (one barycentre sweep), which keeps fan-out and joins free of needless crossings.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from orchestrator.state.applied import AppliedPipeline

BOX_WIDTH = 170
BOX_HEIGHT = 92
GAP_X = 60
GAP_Y = 24
MARGIN = 8


@dataclass(frozen=True)
class Box:
    """A step's box: top-left corner."""

    step: str
    x: int
    y: int


@dataclass(frozen=True)
class Edge:
    """An edge as a cubic Bézier path from the right side of one box to the left of the next."""

    source: str
    target: str
    path: str


@dataclass(frozen=True)
class Layout:
    boxes: tuple[Box, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int
    box_width: int = BOX_WIDTH
    box_height: int = BOX_HEIGHT


def step_graph(pipeline: AppliedPipeline) -> nx.DiGraph:
    """The pipeline's steps and edges as a directed graph."""
    graph = nx.DiGraph()
    graph.add_nodes_from(pipeline.step_names)
    for step in pipeline.steps:
        graph.add_edges_from((step.name, s) for s in step.successors if s in graph)
        graph.add_edges_from((p, step.name) for p in step.predecessors if p in graph)
    return graph


def layout(pipeline: AppliedPipeline) -> Layout:
    """Positions of the boxes and paths of the edges of `pipeline`'s graph."""
    graph = step_graph(pipeline)
    layers = _layers(graph, pipeline.step_names)
    rows = max((len(layer) for layer in layers), default=1)
    height = rows * BOX_HEIGHT + (rows - 1) * GAP_Y + 2 * MARGIN
    boxes: dict[str, Box] = {}
    for column, layer in enumerate(layers):
        offset = (height - (len(layer) * BOX_HEIGHT + (len(layer) - 1) * GAP_Y)) // 2
        for row, step in enumerate(layer):
            x = MARGIN + column * (BOX_WIDTH + GAP_X)
            boxes[step] = Box(step, x, offset + row * (BOX_HEIGHT + GAP_Y))
    edges = tuple(_edge(boxes[a], boxes[b]) for a, b in graph.edges if a in boxes and b in boxes)
    width = len(layers) * BOX_WIDTH + (len(layers) - 1) * GAP_X + 2 * MARGIN
    return Layout(tuple(boxes[s] for s in pipeline.step_names if s in boxes), edges, width, height)


def _layers(graph: nx.DiGraph, order: tuple[str, ...]) -> list[list[str]]:
    """Steps by longest-path layer, ordered within each layer by their predecessors' mean row."""
    depth: dict[str, int] = {}
    acyclic = nx.is_directed_acyclic_graph(graph)
    for step in nx.topological_sort(graph) if acyclic else order:
        preds = [depth[p] for p in graph.predecessors(step) if p in depth]
        depth[step] = max(preds) + 1 if preds else 0
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for step in order:
        layers[depth[step]].append(step)
    position: dict[str, float] = {}
    for layer in layers:
        layer.sort(key=lambda s: _barycentre(graph, s, position, order))
        position.update({s: float(i) for i, s in enumerate(layer)})
    return layers


def _barycentre(
    graph: nx.DiGraph, step: str, position: dict[str, float], order: tuple[str, ...]
) -> tuple[float, int]:
    placed = [position[p] for p in graph.predecessors(step) if p in position]
    return (sum(placed) / len(placed) if placed else 0.0, order.index(step))


def _edge(source: Box, target: Box) -> Edge:
    x1, y1 = source.x + BOX_WIDTH, source.y + BOX_HEIGHT // 2
    x2, y2 = target.x, target.y + BOX_HEIGHT // 2
    middle = (x1 + x2) // 2
    return Edge(source.step, target.step, f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2 - 6},{y2}")
