"""A pipeline's step graph as text: Graphviz `dot` and Mermaid `flowchart`.

Steps are quoted as the formats require (a step name is letters, digits and underscores, so
there is nothing else to escape); the entry step is marked, joins are drawn as double boxes.
Topics are drawn too, with dashed edges: a routing key a step publishes (`publish`) after the
step, a pattern the pipeline subscribes to (`subscribe`) before the entry step. Keys and
patterns hold letters, digits, '_', '-', '.', '*' and '#' only (`spec.topics`): inside double
quotes neither format needs more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.spec import Pipeline


def dot(pipeline: Pipeline) -> str:
    """`digraph` text for `dot -Tsvg`."""
    lines = [f'digraph "{pipeline.name}" {{', "  rankdir=LR;", "  node [shape=box];"]
    for step in pipeline.order:
        lines.append(f'  "{step}"{_dot_style(pipeline, step)};')
    for i, pattern in enumerate(pipeline.subscriptions):
        lines.append(f'  "subscribe {i}" [shape=note, style=dashed, label="{pattern}"];')
        lines.append(f'  "subscribe {i}" -> "{pipeline.entry_step}" [style=dashed];')
    for step, key, i in _published(pipeline):
        lines.append(f'  "publish {i}" [shape=note, style=dashed, label="{key}"];')
        lines.append(f'  "{step}" -> "publish {i}" [style=dashed];')
    for step in pipeline.order:
        lines.extend(f'  "{step}" -> "{after}";' for after in pipeline.successors(step))
    return "\n".join([*lines, "}"]) + "\n"


def _dot_style(pipeline: Pipeline, step: str) -> str:
    if step == pipeline.entry_step:
        return " [style=bold]"
    return " [peripheries=2]" if pipeline.is_join(step) else ""


def mermaid(pipeline: Pipeline) -> str:
    """`flowchart LR` text for Markdown."""
    lines = ["flowchart LR"]
    for step in pipeline.order:
        lines.append(f"  {step}{_mermaid_shape(pipeline, step)}")
    # Topic nodes get ids no step can have (a step name holds no '__').
    for i, pattern in enumerate(pipeline.subscriptions):
        lines.append(f'  subscribe__{i}>"{pattern}"] -.-> {pipeline.entry_step}')
    for step, key, i in _published(pipeline):
        lines.append(f'  {step} -.-> publish__{i}>"{key}"]')
    for step in pipeline.order:
        lines.extend(f"  {step} --> {after}" for after in pipeline.successors(step))
    return "\n".join(lines) + "\n"


def _mermaid_shape(pipeline: Pipeline, step: str) -> str:
    if step == pipeline.entry_step:
        return f'(["{step}"])'
    return f'[["{step}"]]' if pipeline.is_join(step) else f'["{step}"]'


def _published(pipeline: Pipeline) -> list[tuple[str, str, int]]:
    """(step, routing key, index) of every key a step publishes, in topological order."""
    keys = [(step, key) for step in pipeline.order for key in pipeline.steps[step].publish]
    return [(step, key, i) for i, (step, key) in enumerate(keys)]
