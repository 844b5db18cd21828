"""Partition upkeep of partitioned queues: the Python side of `pgmq_ext.run_maintenance`.

`maintain` runs the SQL maintenance for one queue, or for every partitioned queue one at a
time, each in its own short transaction (autocommit), so the locks that creating, attaching
and dropping partitions need are held as briefly as possible. The runtime calls it
periodically; it is safe to call from several processes at once (each queue is maintained
under that queue's advisory lock).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from orchestrator.db.named_sql import named_queries


@dataclass(frozen=True)
class MaintenanceAction:
    """One thing maintenance did (or could not do) to one queue."""

    queue_name: str
    table_name: str | None
    action: str  # created | dropped | skipped | failed
    partition_name: str | None
    moved_rows: int
    detail: str | None


@dataclass(frozen=True)
class MaintenanceReport:
    """Everything one `maintain` call did."""

    actions: tuple[MaintenanceAction, ...]

    def _named(self, action: str) -> tuple[MaintenanceAction, ...]:
        return tuple(a for a in self.actions if a.action == action)

    @property
    def created(self) -> tuple[MaintenanceAction, ...]:
        return self._named("created")

    @property
    def dropped(self) -> tuple[MaintenanceAction, ...]:
        return self._named("dropped")

    @property
    def problems(self) -> tuple[MaintenanceAction, ...]:
        """Queues skipped (busy) or failed; maintenance will try them again next time."""
        return self._named("skipped") + self._named("failed")

    @property
    def moved_rows(self) -> int:
        """Rows moved out of default partitions into partitions of their own."""
        return sum(a.moved_rows for a in self.actions)


_RUN = named_queries("orchestrator.queue")["run_maintenance"]
_PARTITIONED = named_queries("orchestrator.queue")["partitioned_queues"]


async def maintain(conn: asyncpg.Connection, queue_name: str | None = None) -> MaintenanceReport:
    """Create partitions ahead, empty default partitions and drop partitions past retention.

    With `queue_name`, only that queue (an unknown queue is an error; a queue that is not
    partitioned needs nothing). Without, every partitioned queue, one transaction each.
    """
    names = [queue_name] if queue_name is not None else await _partitioned_queues(conn)
    actions: list[MaintenanceAction] = []
    for name in names:
        rows = await conn.fetch(_RUN, name)
        actions.extend(_action(row) for row in rows)
    return MaintenanceReport(tuple(actions))


async def _partitioned_queues(conn: asyncpg.Connection) -> list[str]:
    return [str(r["queue_name"]) for r in await conn.fetch(_PARTITIONED)]


def _action(row: asyncpg.Record) -> MaintenanceAction:
    return MaintenanceAction(
        queue_name=row["queue_name"],
        table_name=row["table_name"],
        action=row["action"],
        partition_name=row["partition_name"],
        moved_rows=int(row["moved_rows"] or 0),
        detail=row["detail"],
    )
