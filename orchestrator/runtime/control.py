"""Operating pipelines from code: `pause`, `resume` and `cancel`.

::

    await orchestrator.pause("work_orders", "sap_sync")     # workers stop reading it within 1 s
    await orchestrator.resume("work_orders.sap_sync")       # the same target, written dotted
    outcome = await orchestrator.cancel(run_id, conn=conn)  # CancelOutcome(state="cancelled", ...)

A pause is a row in ``orchestrator.paused_steps``: it survives worker restarts, and workers
announce nothing; they look at it at most once a second per step. A cancel deletes the run's
waiting and delayed messages and records the run in ``orchestrator.cancelled_runs``, in the
caller's transaction when `conn` is given. No handler of the run starts after the cancel
committed, on any worker: the cancel first takes the run's lock, which every batch holding a
message of the run holds (shared) from its claim to its commit, so it waits for such batches
to end (their handlers started before it) and deletes what their hand-offs sent; a later
claim waits for the cancel and then deletes the run's messages instead of running them
(``store/sql/functions/30_flow.sql``, ``20_handoff.sql``). The wait is at most `wait` seconds
(default `CANCEL_WAIT`); a run whose handlers are still at work then is not cancelled
(QueueError, nothing changed: try again, or wait longer).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from orchestrator.db.named_sql import named_queries
from orchestrator.errors import NotFound, QueueError, SchemaMissing
from orchestrator.spec.naming import is_valid_name

__all__ = ["CANCEL_WAIT", "CancelOutcome", "cancel", "pause", "resume", "split_target"]

CANCEL_WAIT = 30.0
"""Seconds a cancel waits by default for the batches of the run at work."""


@dataclass(frozen=True)
class CancelOutcome:
    """What `cancel` did to one run.

    `state`: 'cancelled', 'already cancelled', 'finished' (nothing changed) or 'unknown'.
    """

    run_id: uuid.UUID
    state: str
    pipeline: str | None
    removed: int
    in_flight: int


def split_target(target: str, step: str | None = None) -> tuple[str, str | None]:
    """('pipeline', 'step' or None) from 'pipeline', 'pipeline.step' or (pipeline, step)."""
    if not isinstance(target, str):
        raise QueueError(f"expected a pipeline name, not {target!r}")
    pipeline, _, dotted = target.partition(".")
    chosen = step if step is not None else (dotted or None)
    if dotted and step is not None:
        raise QueueError(f"'{target}' names a step already; pass the step once")
    for name in (pipeline, chosen):
        if name is not None and not is_valid_name(name):
            raise NotFound(f"'{target}' is not an applied pipeline or step")
    return pipeline, chosen


async def pause(
    target: str, step: str | None = None, *, conn: Any | None = None, dsn: str | None = None
) -> bool:
    """Pause a pipeline ('orders') or one step ('orders.ship'); False when already paused."""
    pipeline, chosen = split_target(target, step)
    return bool(await _call(conn, dsn, "pause", pipeline, chosen))


async def resume(
    target: str, step: str | None = None, *, conn: Any | None = None, dsn: str | None = None
) -> bool:
    """Resume what `pause` paused; False when it was not paused."""
    pipeline, chosen = split_target(target, step)
    return bool(await _call(conn, dsn, "resume", pipeline, chosen))


async def cancel(
    run_id: uuid.UUID | str,
    *,
    conn: Any | None = None,
    dsn: str | None = None,
    by: str | None = None,
    wait: float = CANCEL_WAIT,
) -> CancelOutcome:
    """Cancel run `run_id` (see the module docstring); `by` is recorded (default: the user);
    `wait`: the longest wait, in seconds, for handlers of the run already at work."""
    if not isinstance(wait, int | float) or not 0 < wait <= 86_400:
        raise QueueError(f"wait must be a number of seconds in (0, 86400], not {wait!r}")
    try:
        run = run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))
    except ValueError:
        raise QueueError(f"'{run_id}' is not a run id (a UUID)") from None
    try:
        row = await _call(conn, dsn, "cancel_run", run, by, float(wait), fetch_row=True)
    except asyncpg.LockNotAvailableError:
        raise QueueError(
            f"run {run} was not cancelled: a handler of it was still at work after {wait:g} s "
            "(a cancel waits for the handlers already started, so that none starts after it); "
            "try again, or wait longer (--wait)"
        ) from None
    return CancelOutcome(run, row["outcome"], row["pipeline"], row["removed"], row["in_flight"])


async def _call(
    conn: Any | None, dsn: str | None, query: str, *args: Any, fetch_row: bool = False
) -> Any:
    if conn is None:
        from orchestrator.db import connect, resolve_dsn

        own = await connect(resolve_dsn(dsn))
        try:
            return await _call(own, None, query, *args, fetch_row=fetch_row)
        finally:
            await own.close()
    try:
        if fetch_row:
            return await conn.fetchrow(named_queries("orchestrator.runtime")[query], *args)
        return await conn.fetchval(named_queries("orchestrator.runtime")[query], *args)
    except asyncpg.UndefinedObjectError as exc:
        raise NotFound(str(exc.args[0] if exc.args else exc)) from None
    except (asyncpg.UndefinedFunctionError, asyncpg.InvalidSchemaNameError):
        raise SchemaMissing(
            "the database has no flow control yet (an older orchestrator schema); "
            "run orchestrator apply"
        ) from None
