"""The compiler: pipeline models -> desired database state -> plan -> SQL -> apply.

Owns: the desired state of the pipelines (queues, storage, notifications, run_id indexes,
FIFO group indexes of grouped steps, join steps, metadata rows), reading the current catalog,
diffing with drift detection and destructive flags, rendering DDL from sandboxed jinja2
templates, applying under an advisory lock, worker grants, and the applied-version check
`orchestrator run` makes.
Must not import: runtime, ops, cli.

    from orchestrator.compiler import apply, plan
    print("\\n".join((await plan(conn, pipelines)).lines()))
    await apply(conn, pipelines, allow_destroy=False, grant="worker")
"""

from orchestrator.compiler.applied import applied_hashes, check_applied
from orchestrator.compiler.applier import (
    APPLY_LOCK_KEY,
    ApplyFailed,
    ApplyResult,
    DestructiveChange,
    IncompatibleChange,
    apply,
)
from orchestrator.compiler.desired import DesiredState, desired_state
from orchestrator.compiler.grants import GrantResult, InvalidRole, check_role
from orchestrator.compiler.planner import Change, Plan, diff, plan
from orchestrator.compiler.render import UnsafeName

__all__ = [
    "APPLY_LOCK_KEY",
    "ApplyFailed",
    "ApplyResult",
    "Change",
    "DesiredState",
    "DestructiveChange",
    "GrantResult",
    "IncompatibleChange",
    "InvalidRole",
    "Plan",
    "UnsafeName",
    "applied_hashes",
    "apply",
    "check_applied",
    "check_role",
    "desired_state",
    "diff",
    "plan",
]
