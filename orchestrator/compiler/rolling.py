"""Rolling deploys: may a worker of one pipeline version run steps beside another applied one?

A worker loads its own pipeline files; the database holds the version `apply` recorded last.
When the two hashes differ, the worker may still run the steps it was asked to run if each is
safe against the applied version (`step_problems` empty):

- the pipeline's own settings (queues, dead-letter queue, schedules) are the same;
- the step exists in the applied version with the same handler reference, settings and
  neighbours: its hand-offs go to the same steps, each join successor waits for the same
  predecessors;
- every message the applied version may put in its queue satisfies the worker's input
  contract (the applied effective input is at least as strict, `spec.compat.check_edge`), and
  what the step promises satisfies each successor's applied input.

So the only differences a worker bridges are steps it does not run (added, renamed or removed
elsewhere in the graph) and compatible contract changes. See docs/architecture.md, "Rolling
deploys".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from orchestrator.spec.compat import check_edge
from orchestrator.spec.contracts import stored_input
from orchestrator.spec.models import Pipeline

_BRIDGED = ("input", "output", "renamed_from", "description")
_PIPELINE_KEYS = ("format", "dead_letter_queue", "queues", "schedules")


def pipeline_problems(
    own: Pipeline, applied: Mapping[str, Any], steps: Collection[str] | None = None
) -> list[str]:
    """Why workers of `own` cannot run `steps` (default: all) beside the applied spec."""
    mine = own.to_json()
    changed = [key for key in _PIPELINE_KEYS if mine.get(key) != applied.get(key)]
    if changed:
        return [f"its {', '.join(changed)} changed"]
    theirs: Mapping[str, Any] = applied.get("steps", {})
    chosen = own.order if steps is None else [s for s in own.order if s in steps]
    return [p for step in chosen for p in step_problems(step, mine["steps"], theirs)]


def step_problems(step: str, mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """What makes `step` unsafe to run from spec steps `mine` beside applied steps `theirs`."""
    if step not in theirs:
        return [f"step {step} is not in the applied version"]
    if _without_contracts(mine[step]) != _without_contracts(theirs[step]):
        return [f"step {step} changed"]
    for successor in mine[step]["successors"]:
        if mine[successor]["predecessors"] != theirs[successor].get("predecessors"):
            return [f"join {successor} waits for other steps in the applied version"]
    problems = []
    if not _covers(stored_input(theirs, step), stored_input(mine, step)):
        problems.append(f"step {step}: the applied input accepts messages this version refuses")
    for successor in mine[step]["successors"]:
        if not _covers(mine[step].get("output"), stored_input(theirs, successor)):
            problems.append(f"step {step}: its output may break the input of step {successor}")
    return problems


def _without_contracts(step: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in step.items() if k not in _BRIDGED}


def _covers(given: Any, wanted: Any) -> bool:
    """True when whatever `given` allows satisfies `wanted` (None: no contract)."""
    if wanted is None or given == wanted:
        return True
    if not (isinstance(given, dict) and isinstance(wanted, dict)):
        return False
    return not check_edge(given, wanted)
