"""Flow control as `status` and `trace` show it: paused steps, limits at work, cancelled runs.

Read from the applied specs and the flow-control tables through ``orchestrator.ops_flow`` and
``orchestrator.ops_cancelled_counts`` (``store/sql/functions/56_ops_flow.sql``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from orchestrator.ops.queries import query


@dataclass(frozen=True)
class StepFlow:
    """Pauses and limits of one step, with what they hold right now."""

    pipeline: str
    step: str
    paused_since: datetime | None
    paused_by: str | None
    rate: str | None
    bucket: str | None
    tokens: float | None
    """Tokens the bucket holds now; None before a worker first used it."""
    max_in_flight: int | None
    in_flight: int | None
    """Slots held now (all workers)."""
    group_by: str | None
    max_waiting: int | None

    @property
    def active(self) -> bool:
        """True when the step is paused or has a limit."""
        return self.paused_since is not None or any(
            v is not None for v in (self.rate, self.max_in_flight, self.group_by, self.max_waiting)
        )

    @property
    def state(self) -> str | None:
        """What holds the step back right now: 'paused', 'rate-limited' (its bucket holds less
        than one token), 'at max in flight' (every slot held), else None."""
        if self.paused_since is not None:
            return "paused"
        if self.rate is not None and self.tokens is not None and self.tokens < 1:
            return "rate-limited"
        if self.max_in_flight is not None and (self.in_flight or 0) >= self.max_in_flight:
            return "at max in flight"
        return None

    def describe(self) -> str:
        """One line: 'sap_sync: rate 20/s (bucket sap, 3.0 tokens), in flight 5/8, ...'."""
        parts = []
        if self.paused_since is not None:
            parts.append(
                f"PAUSED since {self.paused_since:%Y-%m-%d %H:%M:%S %Z} by {self.paused_by}"
            )
        if self.rate is not None:
            held = "unused yet" if self.tokens is None else f"{self.tokens:.1f} tokens"
            parts.append(f"rate {self.rate} (bucket {self.bucket}, {held})")
        if self.max_in_flight is not None:
            parts.append(f"in flight {self.in_flight or 0}/{self.max_in_flight}")
        if self.group_by is not None:
            parts.append(f"one at a time per {self.group_by}")
        if self.max_waiting is not None:
            parts.append(f"holds predecessors back above {self.max_waiting} visible")
        return f"{self.step}: {', '.join(parts)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "paused_since": self.paused_since.isoformat() if self.paused_since else None,
            "paused_by": self.paused_by,
            "rate_limit": self.rate,
            "bucket": self.bucket,
            "tokens": self.tokens,
            "max_in_flight": self.max_in_flight,
            "slots_held": self.in_flight,
            "group_by": self.group_by,
            "max_waiting": self.max_waiting,
            "state": self.state,
        }


async def collect_flow(
    conn: asyncpg.Connection, names: Sequence[str] | None = None
) -> dict[tuple[str, str], StepFlow]:
    """Flow control of every step of the applied pipelines `names` (all when None)."""
    rows = await conn.fetch(query("flow"), list(names) if names else None)
    return {(r["pipeline"], r["step"]): StepFlow(**dict(r)) for r in rows}


async def cancelled_counts(
    conn: asyncpg.Connection, names: Sequence[str] | None = None
) -> dict[str, int]:
    """Cancelled runs per pipeline."""
    rows = await conn.fetch(query("cancelled_counts"), list(names) if names else None)
    return {r["pipeline"]: int(r["cancelled"]) for r in rows}


@dataclass(frozen=True)
class Cancellation:
    """When and by whom a run was cancelled."""

    pipeline: str
    at: datetime
    by: str
    removed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "at": self.at.isoformat(),
            "by": self.by,
            "removed": self.removed,
        }


async def run_cancellation(conn: asyncpg.Connection, run_id: str) -> Cancellation | None:
    """The cancellation of run `run_id` (a canonical UUID), or None."""
    row = await conn.fetchrow(query("run_cancelled"), run_id)
    if row is None:
        return None
    return Cancellation(row["pipeline"], row["cancelled_at"], row["cancelled_by"], row["removed"])
