"""What `apply` would change: the desired state compared with the catalog, in words and SQL.

`diff` is pure (desired state + catalog -> `Plan`), so every decision is testable without a
database; `plan` reads the catalog and measures the queues a change would empty.

Rules:

- A queue a pipeline needs and the database lacks is created; one whose partition layout
  differs (or whose tables are damaged) is dropped and created again (a "conversion");
  retention, logged/unlogged, insert notifications and the run_id indexes change in place.
- The queue of a step with ``group_by`` gets the queue layer's FIFO group index; when the
  step loses ``group_by`` (as recorded), apply drops it. An index someone made on a queue whose
  step never had ``group_by`` is left alone.
- A pipeline's ``subscribe`` patterns are bound to its entry queue. A binding the recorded
  spec declares and the files no longer do is removed; a binding someone made by hand is left
  alone, and one the recorded spec declares that is missing is drift.
- Queues apply manages (those recorded for an applied pipeline, and every ``<pipeline>__*``
  queue of a known pipeline) are dropped when no pipeline needs them any more. Other queues
  in the database are left alone.
- A difference the pipeline files did not ask for (the recorded spec already says what the
  file says) is drift: someone changed the database by hand.
- Dropping or converting a queue that holds messages, or deleting join state of runs still
  waiting, is destructive; `apply` refuses it unless allowed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import orjson

from orchestrator.compiler.catalog import (
    ActualQueue,
    Catalog,
    Depth,
    read_catalog,
    read_depth,
)
from orchestrator.compiler.desired import (
    DesiredState,
    PipelineState,
    QueueState,
    TopicBinding,
    describe_notify,
    desired_state,
    pipeline_state,
)
from orchestrator.compiler.render import render
from orchestrator.compiler.spec_diff import spec_changes
from orchestrator.errors import ConfigError
from orchestrator.spec import naming
from orchestrator.spec.contracts import ContractViolation, checker, stored_input
from orchestrator.state import Layers

if TYPE_CHECKING:
    import asyncpg

    from orchestrator.spec import Pipeline

Symbol = Literal["+", "-", "~"]
Kind = Literal["install", "queue", "index", "joins", "pipeline", "contract", "binding"]

DRIFT_NOTE = "changed outside orchestrator apply"
_RETENTION_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Change:
    """One change: what it touches, in words, and the SQL that makes it."""

    symbol: Symbol
    """``+`` adds, ``-`` removes, ``~`` changes in place or replaces."""
    kind: Kind
    subject: str
    """What is changed, e.g. ``queue work_orders__email`` or ``pipeline work_orders``."""
    summary: str
    statements: tuple[str, ...] = ()
    details: tuple[str, ...] = ()
    drift: bool = False
    """The database differs from what was applied: someone changed it by hand."""
    at_risk: str | None = None
    """Queue whose messages this change deletes (a drop or a conversion)."""
    depth: Depth | None = None
    """What `at_risk` holds, once measured."""
    open_joins: int = 0
    """Runs waiting at a join whose state this change deletes."""
    moving: tuple[str, str] | None = None
    """(from queue, to queue) when this change moves a renamed step's messages."""
    moved: Depth | None = None
    """What the `moving` queue holds, once measured."""
    checks: tuple[str, Any] | None = None
    """(queue, new input contract) when a step's input changes: its waiting messages are
    checked against the new contract."""
    breaking: int | None = None
    """Waiting messages that break the new input contract, once counted."""
    removed_step: tuple[str, str, str] | None = None
    """(pipeline, step, dead-letter queue) when this drop removes a step of a pipeline that
    remains: apply's --to-dead-letter and --drain-first decide what happens to its messages."""

    @property
    def destructive(self) -> bool:
        """True when applying this change loses messages or join state."""
        return (self.depth is not None and not self.depth.empty) or self.open_joins > 0

    def describe(self) -> list[str]:
        """The change in words: one line, then its details indented."""
        line = f"{self.symbol} {self.subject}: {self.summary}"
        if self.moving is not None and self.moved is not None:
            old, new = self.moving
            waiting = (
                f"{self.moved.messages} waiting message{'' if self.moved.messages == 1 else 's'}"
            )
            line += f"; move {waiting} from {old} to {new}"
            if self.moved.archived:
                line += f" (and {self.moved.archived} archived)"
        if self.breaking:
            verb = "breaks" if self.breaking == 1 else "break"
            line += f"; {_count(self.breaking, 'waiting message')} {verb} it [incompatible]"
        losses = self.losses()
        if losses:
            line += f"; {losses} [destructive]"
        if self.drift:
            line += " [drift]"
        return [line, *(f"    {detail}" for detail in self.details)]

    def losses(self) -> str:
        """What applying this change deletes, in words ('' when nothing)."""
        parts = []
        if self.depth is not None and not self.depth.empty:
            parts.append(self.depth.describe())
        if self.open_joins:
            runs = "run" if self.open_joins == 1 else "runs"
            parts.append(f"{self.open_joins} {runs} waiting at a join")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (for ``plan --json``)."""
        return {
            "symbol": self.symbol,
            "kind": self.kind,
            "subject": self.subject,
            "summary": self.summary,
            "details": list(self.details),
            "drift": self.drift,
            "destructive": self.destructive,
            "queue": self.at_risk,
            "depth": None
            if self.depth is None
            else {"messages": self.depth.messages, "archived": self.depth.archived},
            "open_joins": self.open_joins,
            "breaking": self.breaking,
            "moves": None
            if self.moving is None
            else {
                "from": self.moving[0],
                "to": self.moving[1],
                "messages": None if self.moved is None else self.moved.messages,
                "archived": None if self.moved is None else self.moved.archived,
            },
            "sql": list(self.statements),
        }


@dataclass(frozen=True)
class Plan:
    """The changes that bring the database to the desired state, in the order they apply."""

    changes: tuple[Change, ...] = ()

    @property
    def empty(self) -> bool:
        """True when there is nothing to do."""
        return not self.changes

    @property
    def destructive(self) -> tuple[Change, ...]:
        """Changes that lose messages or join state."""
        return tuple(c for c in self.changes if c.destructive)

    @property
    def incompatible(self) -> tuple[Change, ...]:
        """Contract changes that messages already waiting do not satisfy."""
        return tuple(c for c in self.changes if c.breaking)

    @property
    def drift(self) -> tuple[Change, ...]:
        """Changes that repair what was changed by hand."""
        return tuple(c for c in self.changes if c.drift)

    @property
    def statements(self) -> tuple[str, ...]:
        """Every SQL statement `apply` runs after installing the layers, in order."""
        return tuple(s for c in self.changes for s in c.statements)

    def summary(self) -> str:
        """``3 changes (1 destructive, 1 drift)`` or ``No changes``."""
        if self.empty:
            return "No changes"
        count = len(self.changes)
        text = f"{count} change{'' if count == 1 else 's'}"
        notes = []
        if self.destructive:
            notes.append(f"{len(self.destructive)} destructive")
        if self.incompatible:
            notes.append(f"{len(self.incompatible)} incompatible")
        if self.drift:
            notes.append(f"{len(self.drift)} drift")
        return f"{text} ({', '.join(notes)})" if notes else text

    def lines(self) -> list[str]:
        """Every change in words."""
        return [line for change in self.changes for line in change.describe()]

    def sql(self) -> str:
        """The plan as one SQL script; installs appear as comments (their SQL is packaged)."""
        parts = []
        for change in self.changes:
            parts.append(f"-- {change.symbol} {change.subject}: {change.summary}")
            parts.extend(change.statements)
        return "\n".join(parts)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (for ``plan --json``)."""
        return {
            "pending": not self.empty,
            "summary": self.summary(),
            "destructive": len(self.destructive),
            "drift": len(self.drift),
            "changes": [c.to_json() for c in self.changes],
        }


async def plan(conn: asyncpg.Connection, pipelines: Iterable[Pipeline]) -> Plan:
    """What applying `pipelines` would change in the database behind `conn` (reads only)."""
    return await plan_state(conn, desired_state(pipelines))


async def plan_state(conn: asyncpg.Connection, desired: DesiredState) -> Plan:
    """`plan` for a desired state built already."""
    catalog = await read_catalog(conn)
    return await measure(conn, diff(desired, catalog), catalog)


async def measure(conn: asyncpg.Connection, the_plan: Plan, catalog: Catalog) -> Plan:
    """`the_plan` with the depth of every queue a change would empty."""
    changes = []
    for change in the_plan.changes:
        queue = catalog.queues.get(change.at_risk) if change.at_risk else None
        if queue is not None:
            change = replace(change, depth=await read_depth(conn, queue))
        source = catalog.queues.get(change.moving[0]) if change.moving else None
        if source is not None:
            change = replace(change, moved=await read_depth(conn, source))
        checked = catalog.queues.get(change.checks[0]) if change.checks else None
        if checked is not None and change.checks is not None and checked.has_table:
            change = replace(change, breaking=await count_breaking(conn, *change.checks))
        changes.append(change)
    return Plan(tuple(changes))


def diff(desired: DesiredState, catalog: Catalog) -> Plan:
    """The changes from `catalog` to `desired`; destructive changes are not measured yet."""
    recorded = recorded_states(catalog)
    recorded_queues = {q.name: q for state in recorded.values() for q in state.queues}
    renames = rename_changes(desired, catalog)
    moved = {name for change in renames for name in change.moving or ()}
    creates, recreates, alters, indexes = _queue_changes(desired, catalog, recorded_queues)
    binds, unbinds = binding_changes(desired, catalog, recorded)
    return Plan(
        (
            *layer_changes(catalog.layers),
            *unbinds,
            *(c for c in drop_changes(desired, catalog, recorded) if c.at_risk not in moved),
            *recreates,
            *renames,
            *(c for c in creates if c.subject.removeprefix("queue ") not in moved),
            *alters,
            *indexes,
            *binds,
            *join_changes(desired, catalog),
            *contract_changes(desired, catalog),
            *record_changes(desired, catalog),
            *forget_changes(desired, catalog),
        )
    )


def recorded_states(catalog: Catalog) -> dict[str, PipelineState]:
    """The state each applied pipeline's recorded spec describes (unreadable specs skipped)."""
    states = {}
    for name, applied in catalog.applied.items():
        try:
            states[name] = pipeline_state(applied.spec, applied.spec_hash)
        except ConfigError:
            continue
    return states


def rename_changes(desired: DesiredState, catalog: Catalog) -> list[Change]:
    """Steps renamed with `renamed_from` whose old queue exists and new queue does not yet:
    create the new queue, move everything of the old step to it, drop the old queue."""
    changes = []
    for state in desired.pipelines.values():
        queues = {q.step: q for q in state.queues if q.step is not None}
        dead_letter = next(q.name for q in state.queues if q.step is None)
        for old_step, new_step in state.renames:
            old_queue = naming.step_queue_name(state.name, old_step)
            want = queues[new_step]
            if old_queue not in catalog.queues or want.name in catalog.queues:
                continue
            statements = (
                *create_statements(want),
                render(
                    "move_step",
                    pipeline=state.name,
                    old_step=old_step,
                    new_step=new_step,
                    dead_letter_queue=dead_letter,
                ),
                render("drop_queue", name=old_queue),
            )
            summary = f"rename step {old_step} to {new_step} (archive, dead letters, join rows)"
            changes.append(
                Change(
                    "~",
                    "queue",
                    f"queue {old_queue} -> {want.name}",
                    summary,
                    statements,
                    moving=(old_queue, want.name),
                )
            )
    return changes


def contract_changes(desired: DesiredState, catalog: Catalog) -> list[Change]:
    """Steps (applied before) whose effective input contract changes to a JSON Schema."""
    changes = []
    for name, state in desired.pipelines.items():
        applied = catalog.applied.get(name)
        if applied is None or applied.spec_hash == state.spec_hash:
            continue
        old_steps, new_steps = applied.spec.get("steps", {}), state.spec["steps"]
        for step in new_steps:
            if step not in old_steps:
                continue
            new = stored_input(new_steps, step)
            if not isinstance(new, dict) or new == _stored_input_or_none(old_steps, step):
                continue
            queue = naming.step_queue_name(name, step)
            summary = "input contract changes; waiting messages are checked against it"
            changes.append(
                Change("~", "contract", f"input of {name}.{step}", summary, checks=(queue, new))
            )
    return changes


def _stored_input_or_none(steps: Mapping[str, Any], step: str) -> Any:
    try:
        return stored_input(steps, step)
    except (KeyError, TypeError, AttributeError):
        return None


async def count_breaking(conn: asyncpg.Connection, queue: str, contract: Any) -> int:
    """How many messages `queue` holds that break `contract` (a JSON Schema)."""
    check = checker(contract)
    breaking = 0
    async with conn.transaction(readonly=True) if not conn.is_in_transaction() else _nothing():
        async for row in conn.cursor(render("waiting_bodies", name=queue)):
            try:
                check(orjson.loads(row[0]))
            except ContractViolation:
                breaking += 1
    return breaking


def layer_changes(layers: Layers) -> list[Change]:
    """Installs and upgrades of the queue layer and of schema orchestrator."""
    from orchestrator.queue import sqlfiles
    from orchestrator.store.install import VERSION as STORE_VERSION

    changes = []
    latest = sqlfiles.latest_version()
    if not layers.pgmq_extension:
        if layers.queue_version is None:
            summary = f"install version {latest} (schemas pgmq and pgmq_ext)"
            changes.append(Change("+", "install", "queue layer", summary))
        elif layers.queue_version < latest:
            summary = f"upgrade from version {layers.queue_version} to {latest}"
            changes.append(Change("~", "install", "queue layer", summary))
        elif not layers.queue_functions_current:
            summary = f"update the functions of version {latest}"
            changes.append(Change("~", "install", "queue layer", summary))
    if not layers.store_installed:
        summary = f"install version {STORE_VERSION}"
        changes.append(Change("+", "install", "schema orchestrator", summary))
    elif not layers.store_current:
        summary = f"update to version {STORE_VERSION}"
        changes.append(Change("~", "install", "schema orchestrator", summary))
    return changes


def managed_queues(
    desired: DesiredState, catalog: Catalog, recorded: Mapping[str, PipelineState]
) -> set[str]:
    """Queues in the database that apply owns: recorded ones and ``<known pipeline>__*``."""
    known = set(desired.pipelines) | set(catalog.applied)
    owned = {q.name for state in recorded.values() for q in state.queues}
    owned.update(
        naming.dead_letter_queue_name(name) for name in catalog.applied if name not in recorded
    )
    for name in catalog.queues:
        split = naming.split_step_queue_name(name)
        if split is not None and split[0] in known:
            owned.add(name)
    return owned & set(catalog.queues)


def drop_changes(
    desired: DesiredState, catalog: Catalog, recorded: Mapping[str, PipelineState]
) -> list[Change]:
    """Managed queues no pipeline needs any more."""
    wanted = desired.queues
    owners = {q.name: q for state in recorded.values() for q in state.queues}
    changes = []
    for name in sorted(managed_queues(desired, catalog, recorded) - set(wanted)):
        statements = (render("drop_queue", name=name),)
        reason = _drop_reason(name, owners.get(name), desired)
        split = naming.split_step_queue_name(name)
        state = desired.pipelines.get(split[0]) if split is not None else None
        removed = None
        if split is not None and state is not None:
            dead_letter = next(q.name for q in state.queues if q.step is None)
            removed = (split[0], split[1], dead_letter)
        changes.append(
            Change(
                "-",
                "queue",
                f"queue {name}",
                reason,
                statements,
                at_risk=name,
                removed_step=removed,
            )
        )
    return changes


def to_dead_letter(change: Change) -> Change:
    """A removed step's drop that first moves its messages to the dead-letter queue (its
    archive still goes with the queue)."""
    if change.removed_step is None:
        return change
    pipeline, step, dead_letter = change.removed_step
    move = render("dead_letter_step", pipeline=pipeline, step=step, dead_letter_queue=dead_letter)
    held = change.depth.messages if change.depth is not None else 0
    summary = f"{change.summary}; move {held} message{'' if held == 1 else 's'} to {dead_letter}"
    if change.depth is not None and change.depth.archived:
        summary += f" (its {change.depth.archived} archived go with the queue)"
    return replace(change, summary=summary, statements=(move, *change.statements), depth=None)


def _drop_reason(name: str, owner: QueueState | None, desired: DesiredState) -> str:
    split = naming.split_step_queue_name(name)
    pipeline = owner.pipeline if owner is not None else split[0] if split else None
    if pipeline is not None and pipeline not in desired.pipelines:
        return f"drop (pipeline {pipeline} is gone)"
    if split is not None:
        return f"drop (step {split[1]} is no longer in pipeline {split[0]})"
    return f"drop (no longer the dead-letter queue of pipeline {pipeline})"


def _queue_changes(
    desired: DesiredState, catalog: Catalog, recorded: Mapping[str, QueueState]
) -> tuple[list[Change], list[Change], list[Change], list[Change]]:
    creates: list[Change] = []
    recreates: list[Change] = []
    alters: list[Change] = []
    indexes: list[Change] = []
    for name, want in desired.queues.items():
        have = catalog.queues.get(name)
        before = recorded.get(name)
        if have is None:
            creates.append(create_change(want, before))
        elif not have.intact or _layout(want) != _layout(have):
            recreates.append(recreate_change(want, have, before))
        else:
            alter = alter_change(want, have, before)
            if alter is not None:
                alters.append(alter)
            for index in (index_change(want, have, before), fifo_change(want, have, before)):
                if index is not None:
                    indexes.append(index)
    return creates, recreates, alters, indexes


def _layout(queue: QueueState | ActualQueue) -> tuple[str, float] | None:
    partition = queue.storage.partition
    return None if partition is None else (partition.by, partition.interval)


def create_statements(want: QueueState) -> tuple[str, ...]:
    """Create a queue with its storage, notifications, run_id and FIFO group indexes."""
    fifo = (render("create_fifo_index", name=want.name),) if want.group_by else ()
    return (
        render("create_queue", queue=want),
        *index_statements(want, want.run_id_tables),
        *fifo,
    )


def index_statements(want: QueueState, prefixes: Iterable[str]) -> tuple[str, ...]:
    """The run_id index of each of `want`'s tables named by `prefixes` (``q``, ``a``)."""
    return tuple(
        render("create_run_id_index", name=want.name, prefix=p, index=run_id_index(want.name, p))
        for p in prefixes
    )


def run_id_index(queue: str, prefix: str) -> str:
    """Name of the run_id index of a queue's table (``q``) or archive (``a``)."""
    return f"{prefix}_{queue}_run_id"


def create_change(want: QueueState, before: QueueState | None) -> Change:
    """A queue the database lacks; drift when it was applied before (dropped by hand)."""
    settings = want.storage.describe()
    if want.group_by:
        settings += f"; FIFO group index for group_by {want.group_by}"
    summary = f"create ({settings})"
    if before is not None:
        summary = f"create again: it is missing ({DRIFT_NOTE}); {settings}"
    return Change(
        "+",
        "queue",
        f"queue {want.name}",
        summary,
        create_statements(want),
        drift=before is not None,
    )


def recreate_change(want: QueueState, have: ActualQueue, before: QueueState | None) -> Change:
    """Drop and create a queue whose layout must change or whose tables are damaged."""
    if not have.intact:
        summary = f"drop and create again: its tables are damaged ({DRIFT_NOTE})"
        drift = True
    else:
        summary = (
            f"convert: {_describe_layout(have)} -> {_describe_layout(want)} (drop and create again)"
        )
        drift = before is not None and _layout(before) == _layout(want)
    statements = (render("drop_queue", name=want.name), *create_statements(want))
    return Change(
        "~", "queue", f"queue {want.name}", summary, statements, drift=drift, at_risk=want.name
    )


def _describe_layout(queue: QueueState | ActualQueue) -> str:
    partition = queue.storage.partition
    return (
        "not partitioned"
        if partition is None
        else f"partitioned by {partition.describe_interval()}"
    )


def alter_change(want: QueueState, have: ActualQueue, before: QueueState | None) -> Change | None:
    """In-place changes: partition retention, logged/unlogged, insert notifications."""
    details: list[str] = []
    statements: list[str] = []
    drift = False
    wanted, current = want.storage, have.storage
    prior = before.storage if before is not None else None

    def note(text: str, by_hand: bool) -> None:
        nonlocal drift
        drift = drift or by_hand
        details.append(f"{text} ({DRIFT_NOTE})" if by_hand else text)

    wanted_partition, current_partition = wanted.partition, current.partition
    if (
        wanted_partition is not None
        and current_partition is not None
        and not _same_retention(wanted_partition.retention, current_partition.retention)
    ):
        by_hand = prior is not None and prior.partition == wanted_partition
        was, now = current_partition.describe_retention(), wanted_partition.describe_retention()
        note(f"partitions: {was} -> {now}", by_hand)
        statements.append(
            render("set_partition_retention", name=want.name, partition=wanted_partition)
        )
    if wanted_partition is None and (
        wanted.unlogged != current.unlogged or wanted.unlogged != have.meta_unlogged
    ):
        by_hand = prior is not None and prior.unlogged == wanted.unlogged
        note(f"{_persistence(current.unlogged)} -> {_persistence(wanted.unlogged)}", by_hand)
        statements.append(render("set_persistence", name=want.name, unlogged=wanted.unlogged))
    if wanted.notify_ms != current.notify_ms or have.notify_broken:
        by_hand = have.notify_broken or (prior is not None and prior.notify_ms == wanted.notify_ms)
        was = "broken notifications" if have.notify_broken else describe_notify(current.notify_ms)
        note(f"{was} -> {describe_notify(wanted.notify_ms)}", by_hand)
        statements.append(_notify_statement(want.name, wanted.notify_ms, have.notify_broken))
    if not statements:
        return None
    summary = "; ".join(details)
    return Change("~", "queue", f"queue {want.name}", summary, tuple(statements), drift=drift)


def _notify_statement(name: str, notify_ms: int | None, broken: bool) -> str:
    if broken and notify_ms is None:
        # disable_notify_insert drops the trigger only together with its throttle sequence,
        # so the missing sequence is made again first.
        enable = render("set_notify", name=name, notify_ms=0)
        return enable + "\n" + render("set_notify", name=name, notify_ms=None)
    return render("set_notify", name=name, notify_ms=notify_ms)


def _same_retention(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) < _RETENTION_TOLERANCE


def _persistence(unlogged: bool) -> str:
    return "unlogged" if unlogged else "logged"


def index_change(want: QueueState, have: ActualQueue, before: QueueState | None) -> Change | None:
    """The run_id indexes a queue lacks."""
    missing = [p for p in want.run_id_tables if p not in have.run_id_tables]
    if not missing:
        return None
    tables = " and ".join("queue table" if p == "q" else "archive" for p in missing)
    summary = f"index the {tables} on headers->>'run_id'"
    if before is not None:
        summary += f" (index missing: {DRIFT_NOTE})"
    return Change(
        "+",
        "index",
        f"queue {want.name}",
        summary,
        index_statements(want, missing),
        drift=before is not None,
    )


def fifo_change(want: QueueState, have: ActualQueue, before: QueueState | None) -> Change | None:
    """The FIFO group index a grouped step's queue lacks, or one its step no longer needs."""
    if want.group_by and not have.fifo_index:
        summary = f"FIFO group index for group_by {want.group_by}"
        by_hand = before is not None and before.group_by is not None
        if by_hand:
            summary += f" (index missing: {DRIFT_NOTE})"
        statements = (render("create_fifo_index", name=want.name),)
        return Change("+", "index", f"queue {want.name}", summary, statements, drift=by_hand)
    if not want.group_by and have.fifo_index and before is not None and before.group_by:
        summary = f"drop the FIFO group index (group_by {before.group_by} removed)"
        statements = (render("drop_fifo_index", index=fifo_index(want.name)),)
        return Change("-", "index", f"queue {want.name}", summary, statements)
    return None


def fifo_index(queue: str) -> str:
    """Name of a queue's FIFO group index (the queue layer's ``pgmq_ext.group_index_name``)."""
    return f"q_{queue}_group_idx"


def binding_changes(
    desired: DesiredState, catalog: Catalog, recorded: Mapping[str, PipelineState]
) -> tuple[list[Change], list[Change]]:
    """Topic bindings to make, and those to remove: only bindings a recorded spec declares
    are ever removed (a binding made by hand for another queue is not apply's)."""
    wanted = desired.bindings
    made = {b.key: b for state in recorded.values() for b in state.bindings}
    binds = []
    for key, binding in wanted.items():
        if key in catalog.bindings:
            continue
        by_hand = key in made
        summary = (
            f"bind again: it is missing ({DRIFT_NOTE})"
            if by_hand
            else f"bind (pipeline {binding.pipeline} subscribes to it)"
        )
        statement = render("bind_topic", pattern=binding.pattern, queue=binding.queue)
        binds.append(
            Change("+", "binding", _binding(binding), summary, (statement,), drift=by_hand)
        )
    unbinds = []
    for key, binding in sorted(made.items()):
        if key in wanted or key not in catalog.bindings:
            continue
        reason = _unbind_reason(binding, desired)
        statement = render("unbind_topic", pattern=binding.pattern, queue=binding.queue)
        unbinds.append(
            Change("-", "binding", _binding(binding), f"unbind ({reason})", (statement,))
        )
    return binds, unbinds


def _unbind_reason(binding: TopicBinding, desired: DesiredState) -> str:
    state = desired.pipelines.get(binding.pipeline)
    if state is None:
        return f"pipeline {binding.pipeline} is gone"
    if any(b.pattern == binding.pattern for b in state.bindings):
        moved = state.bindings[0].queue
        return f"the entry queue of pipeline {binding.pipeline} is now {moved}"
    return f"pipeline {binding.pipeline} no longer subscribes to it"


def _binding(binding: TopicBinding) -> str:
    return f"topic {binding.pattern} -> queue {binding.queue}"


def join_changes(desired: DesiredState, catalog: Catalog) -> list[Change]:
    """Join state of steps that are no longer joins in pipelines that remain."""
    changes = []
    for (pipeline, step), count in sorted(catalog.joins.items()):
        if pipeline not in desired.pipelines or (pipeline, step) in desired.joins:
            continue
        rows = f"{count.total} row{'' if count.total == 1 else 's'}"
        summary = f"delete {rows}: step {step} is no longer a join"
        statements = (render("discard_joins", pipeline=pipeline, step=step),)
        subject = f"join state {pipeline}.{step}"
        changes.append(Change("-", "joins", subject, summary, statements, open_joins=count.open))
    return changes


def record_changes(desired: DesiredState, catalog: Catalog) -> list[Change]:
    """Record the version of each pipeline that is new or changed."""
    changes = []
    for name, state in desired.pipelines.items():
        applied = catalog.applied.get(name)
        if applied is not None and applied.spec_hash == state.spec_hash:
            continue
        statements = (render("record_pipeline", pipeline=state),)
        steps = f"{state.step_count} step{'' if state.step_count == 1 else 's'}"
        if applied is None:
            summary = f"record version {state.spec_hash[:12]} ({steps}, entry {state.entry_step})"
            changes.append(Change("+", "pipeline", f"pipeline {name}", summary, statements))
        else:
            summary = f"record version {state.spec_hash[:12]} (was {applied.spec_hash[:12]})"
            details = tuple(spec_changes(applied.spec, state.spec))
            changes.append(
                Change("~", "pipeline", f"pipeline {name}", summary, statements, details)
            )
    return changes


def forget_changes(desired: DesiredState, catalog: Catalog) -> list[Change]:
    """Forget pipelines that no file defines any more: their record, joins and schedules."""
    changes = []
    for name in sorted(set(catalog.applied) - set(desired.pipelines)):
        waiting = sum(c.open for (p, _), c in catalog.joins.items() if p == name)
        summary = "forget (no pipeline file defines it): its record, join state and schedules"
        statements = (render("forget_pipeline", name=name),)
        changes.append(
            Change("-", "pipeline", f"pipeline {name}", summary, statements, open_joins=waiting)
        )
    return changes


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
