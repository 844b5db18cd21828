"""What holds vacuum back: the sessions and objects that pin the cluster's xmin horizon.

Queue tables live on churn: every hand-off deletes or moves a row. Vacuum can only reclaim
those rows once no transaction might still see them, so one forgotten `idle in transaction`
session, a prepared transaction nobody committed or an abandoned replication slot makes every
queue table bloat and every read slower, however well the queues themselves are kept.
`status` and `maintain` name such holders so an operator can end them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from orchestrator.ops.queries import query

HOLD_ALERT = 300.0
"""Seconds a transaction (or prepared transaction) may pin the horizon before it is named."""


@dataclass(frozen=True)
class HorizonHolder:
    """One thing holding vacuum's xmin horizon back."""

    kind: str
    """'transaction', 'prepared transaction', 'replication slot' or 'standby feedback'."""
    name: str
    detail: str
    since: datetime | None
    xid_age: int | None
    """Transactions since the xmin it pins (how far vacuum is held back)."""

    def describe(self, now: datetime) -> str:
        """One line: what it is, for how long, and what it pins."""
        held = f" for {_duration((now - self.since).total_seconds())}" if self.since else ""
        xids = f", {self.xid_age:,} transactions behind" if self.xid_age is not None else ""
        return f"vacuum is held back by {self.kind} {self.name}{held}{xids}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "detail": self.detail,
            "since": self.since.isoformat() if self.since else None,
            "xid_age": self.xid_age,
        }


async def horizon_holders(
    conn: asyncpg.Connection, older_than: float = HOLD_ALERT
) -> tuple[HorizonHolder, ...]:
    """Every holder of the xmin horizon older than `older_than` seconds, worst first."""
    rows = await conn.fetch(query("horizon_holders"), older_than)
    return tuple(
        HorizonHolder(r["kind"], r["name"], r["detail"], r["since"], r["xid_age"]) for r in rows
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
