"""A pipeline's step graph as text: Graphviz `dot` and Mermaid `flowchart`.

Steps are quoted as the formats require (a step name is letters, digits and underscores, so
there is nothing else to escape); the entry step is marked, joins are drawn as double boxes.
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
    for step in pipeline.order:
        lines.extend(f"  {step} --> {after}" for after in pipeline.successors(step))
    return "\n".join(lines) + "\n"


def _mermaid_shape(pipeline: Pipeline, step: str) -> str:
    if step == pipeline.entry_step:
        return f'(["{step}"])'
    return f'[["{step}"]]' if pipeline.is_join(step) else f'["{step}"]'
