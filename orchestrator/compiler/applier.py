"""Apply: bring the database to the state the pipelines ask for, in one transaction.

Under a transaction-level advisory lock, `apply` installs or upgrades the queue layer and
schema orchestrator, reads the catalog, plans, refuses changes that would lose messages unless
allowed, runs the plan's SQL and records each pipeline's applied version. Everything commits
together or not at all. Two applies at once serialise on the lock; the second one reads the
catalog after the first committed (READ COMMITTED) and finds nothing left to do.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import asyncpg

from orchestrator.compiler.desired import DesiredState, desired_state
from orchestrator.compiler.grants import GrantResult, check_role, ensure_role, grant_worker
from orchestrator.compiler.planner import Change, Plan, Symbol, plan_state, to_dead_letter
from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from orchestrator.spec import Pipeline

# pg_advisory_xact_lock key of apply: the bytes of "orchaply" as a bigint.
APPLY_LOCK_KEY = int.from_bytes(b"orchaply", "big", signed=True)


class DestructiveChange(OrchestratorError):
    """The plan would delete messages or join state, and that was not allowed."""


class IncompatibleChange(OrchestratorError):
    """A new input contract that messages already waiting break, and that was not allowed."""


class ApplyFailed(OrchestratorError):
    """The database refused a statement of the plan; nothing was changed."""


@dataclass(frozen=True)
class ApplyResult:
    """What `apply` changed (installs included) and what it granted."""

    plan: Plan
    grant: GrantResult | None = None

    @property
    def changed(self) -> bool:
        """True when the database was changed (grants aside)."""
        return not self.plan.empty

    def lines(self) -> list[str]:
        """The outcome in words, as `orchestrator apply` prints it."""
        if self.plan.empty:
            lines = ["No changes."]
        else:
            count = len(self.plan.changes)
            lines = [*self.plan.lines(), f"Applied {count} change{'' if count == 1 else 's'}."]
        if self.grant is not None:
            lines.append(self.grant.message())
        return lines


async def apply(
    conn: asyncpg.Connection,
    pipelines: Iterable[Pipeline],
    *,
    allow_destroy: bool | Collection[str] = False,
    grant: str | None = None,
    removed_steps: RemovedSteps = "refuse",
    allow_incompatible: bool = False,
) -> ApplyResult:
    """Apply `pipelines` to the database behind `conn`.

    `pipelines` is the whole set: a pipeline applied before and missing here is removed (its
    queues dropped, its record forgotten), as when its file is deleted.

    `allow_destroy`: True allows every destructive change; a collection allows those whose
    subject (e.g. ``queue work_orders__email``) it names, as confirmed from a plan shown
    earlier. `grant`: a role to give what `orchestrator run` needs (it must exist).
    `removed_steps` says what happens to the messages of a step removed from a pipeline that
    remains: "refuse" (a destructive change), "dead_letter" (moved to the dead-letter queue
    with a StepRemoved error, replayable) or "drain" (the queue is kept while it holds
    messages, so workers of the old version empty it; a later apply drops it).
    `allow_incompatible`: apply input contracts that messages already waiting break (they
    are dead-lettered with a ContractError when a worker reads them); else
    `IncompatibleChange` is raised and nothing changes.
    Raises `DestructiveChange` (nothing changed) when a destructive change is not allowed.
    """
    desired = desired_state(pipelines)
    if grant is not None:
        await ensure_role(conn, check_role(grant))
    async with conn.transaction(isolation="read_committed"):
        await conn.execute("SELECT pg_advisory_xact_lock($1)", APPLY_LOCK_KEY)
        installs = await install_layers(conn)
        the_plan = handle_removed_steps(await plan_state(conn, desired), removed_steps)
        refuse_destructive(the_plan, allow_destroy)
        if not allow_incompatible:
            refuse_incompatible(the_plan)
        await execute(conn, the_plan)
        granted = await _grant(conn, grant, desired) if grant is not None else None
    return ApplyResult(Plan((*installs, *the_plan.changes)), granted)


async def install_layers(conn: asyncpg.Connection) -> list[Change]:
    """Install or upgrade the queue layer and schema orchestrator; what changed, in words."""
    from orchestrator.queue.install import install as install_queue_layer
    from orchestrator.store import install as install_store

    changes = []
    queue_layer = await install_queue_layer(conn)
    if queue_layer.changed:
        symbol: Symbol = "+" if queue_layer.action == "installed" else "~"
        summary = {
            "installed": f"installed version {queue_layer.version}",
            "upgraded": f"upgraded from version {queue_layer.previous_version} "
            f"to {queue_layer.version}",
        }.get(queue_layer.action, f"updated the functions of version {queue_layer.version}")
        changes.append(Change(symbol, "install", "queue layer", summary))
    store = await install_store(conn)
    if store.changed:
        symbol = "+" if store.action == "installed" else "~"
        summary = f"{store.action} version {store.version}"
        changes.append(Change(symbol, "install", "schema orchestrator", summary))
    return changes


RemovedSteps = Literal["refuse", "dead_letter", "drain"]


def handle_removed_steps(the_plan: Plan, how: RemovedSteps) -> Plan:
    """`the_plan` with the drops of removed steps holding messages changed as `how` says."""
    if how == "refuse":
        return the_plan
    changes = []
    for change in the_plan.changes:
        holds = change.depth is not None and change.depth.messages > 0
        if change.removed_step is not None and holds:
            if how == "drain":
                continue
            change = to_dead_letter(change)
        changes.append(change)
    return Plan(tuple(changes))


def refuse_incompatible(the_plan: Plan) -> None:
    """Raise `IncompatibleChange` naming every contract change waiting messages break."""
    if not the_plan.incompatible:
        return
    what = "; ".join(f"{c.subject}: {c.breaking} waiting" for c in the_plan.incompatible)
    raise IncompatibleChange(
        f"refusing input contracts that messages already waiting break ({what}). Nothing was "
        "changed; drain those queues first, or pass --allow-incompatible (they are then "
        "dead-lettered with a ContractError when read)"
    )


def refuse_destructive(the_plan: Plan, allow_destroy: bool | Collection[str]) -> None:
    """Raise `DestructiveChange` naming every destructive change that is not allowed."""
    if allow_destroy is True:
        return
    allowed = set() if allow_destroy is False else set(allow_destroy)
    blocked = [c for c in the_plan.destructive if c.subject not in allowed]
    if not blocked:
        return
    what = "; ".join(f"{c.subject} {c.losses()}: {c.summary}" for c in blocked)
    raise DestructiveChange(
        f"refusing to lose data: {what}. Nothing was changed; pass --allow-destroy to apply anyway"
    )


async def execute(conn: asyncpg.Connection, the_plan: Plan) -> None:
    """Run the plan's statements in order (inside the caller's transaction)."""
    for change in the_plan.changes:
        for statement in change.statements:
            try:
                await conn.execute(statement)
            except asyncpg.PostgresError as exc:
                raise ApplyFailed(
                    f"applying {change.subject} failed: {exc}; nothing was changed"
                ) from None


async def _grant(conn: asyncpg.Connection, role: str, desired: DesiredState) -> GrantResult:
    try:
        return await grant_worker(conn, role, desired.queues)
    except asyncpg.PostgresError as exc:
        raise ApplyFailed(f"granting role {role} failed: {exc}; nothing was changed") from None
