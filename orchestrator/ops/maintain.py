"""`orchestrator maintain`: periodic upkeep of every applied pipeline.

- Partition upkeep of partitioned queues (`orchestrator.queue.maintenance.maintain`: create
  partitions ahead, empty default partitions, drop partitions past retention).
- Archive retention (`queues.archive.retention`): archived messages older than the retention
  are deleted from archives that are not partitioned, in batches of one short transaction
  each; partitioned archives lose whole partitions through partition retention instead.
- Join state: rows of `orchestrator.joins` completed more than `JOIN_RETENTION` ago.

The runtime's leader calls `maintain_all` periodically (one process per database); it is
also safe to run by hand at the same time. Call it outside a transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from orchestrator.ops.horizon import HorizonHolder, horizon_holders
from orchestrator.ops.queries import query
from orchestrator.queue.maintenance import MaintenanceReport, maintain
from orchestrator.state import AppliedPipeline, applied_pipelines

_log = logging.getLogger(__name__)

JOIN_RETENTION = 7 * 86400.0
"""Seconds a completed join row is kept: long enough to explain a run in `trace`."""

BATCH = 5000
"""Rows deleted per transaction."""


@dataclass(frozen=True)
class ArchiveTrim:
    """Archive retention applied to one queue."""

    pipeline: str
    queue: str
    retention: float
    deleted: int
    note: str | None = None
    """Why nothing was deleted here: 'partitioned' (partition retention applies) or an error."""


@dataclass(frozen=True)
class MaintainReport:
    """Everything one `maintain_all` call did."""

    partitions: MaintenanceReport
    archives: tuple[ArchiveTrim, ...]
    joins_deleted: int
    problems: tuple[str, ...]
    """Failures, one line each; the rest of the upkeep still ran."""
    horizon: tuple[HorizonHolder, ...] = ()
    """What holds vacuum back, so that the trimmed rows cannot be reclaimed yet."""

    @property
    def archived_deleted(self) -> int:
        return sum(a.deleted for a in self.archives)

    def to_json(self) -> dict[str, Any]:
        return {
            "partitions": [
                {
                    "queue": a.queue_name,
                    "table": a.table_name,
                    "action": a.action,
                    "partition": a.partition_name,
                    "moved_rows": a.moved_rows,
                    "detail": a.detail,
                }
                for a in self.partitions.actions
            ],
            "archives": [
                {
                    "pipeline": a.pipeline,
                    "queue": a.queue,
                    "retention_seconds": a.retention,
                    "deleted": a.deleted,
                    "note": a.note,
                }
                for a in self.archives
            ],
            "joins_deleted": self.joins_deleted,
            "problems": list(self.problems),
            "vacuum_held_back_by": [h.to_json() for h in self.horizon],
        }


async def maintain_all(
    conn: asyncpg.Connection,
    *,
    partitions: bool = True,
    join_retention: float = JOIN_RETENTION,
    batch: int = BATCH,
) -> MaintainReport:
    """Partition upkeep, archive retention and join cleanup for every applied pipeline."""
    problems: list[str] = []
    report = MaintenanceReport(())
    if partitions:
        try:
            report = await maintain(conn)
        except asyncpg.PostgresError as exc:
            problems.append(f"partition upkeep failed: {exc}")
    problems += [f"partitions of {a.queue_name}: {a.action}: {a.detail}" for a in report.problems]
    pipelines = await applied_pipelines(conn)
    archives = await _archive_retention(conn, pipelines, batch, problems)
    joins = await _trim_joins(conn, join_retention, batch, problems)
    for line in problems:
        _log.warning("maintenance: %s", line)
    holders = await horizon_holders(conn)
    now = await conn.fetchval(query("clock"))
    for holder in holders:
        _log.warning("maintenance: %s", holder.describe(now))
    return MaintainReport(report, tuple(archives), joins, tuple(problems), holders)


async def _archive_retention(
    conn: asyncpg.Connection, pipelines: list[AppliedPipeline], batch: int, problems: list[str]
) -> list[ArchiveTrim]:
    kept = [p for p in pipelines if p.archive_retention is not None]
    if not kept:
        return []
    queues = [q for p in kept for q in p.queue_names()]
    partitioned = {r["queue_name"] for r in await conn.fetch(query("partitioned"), queues)}
    now: datetime = await conn.fetchval(query("clock"))
    trims = []
    for pipeline in kept:
        retention = float(pipeline.archive_retention or 0)
        cutoff = now - timedelta(seconds=retention)
        for queue in pipeline.queue_names():
            if queue in partitioned:
                trims.append(ArchiveTrim(pipeline.name, queue, retention, 0, "partitioned"))
                continue
            trims.append(await _trim_archive(conn, pipeline.name, queue, retention, cutoff, batch))
            if trims[-1].note:
                problems.append(f"archive retention of {queue}: {trims[-1].note}")
    return trims


async def _trim_archive(
    conn: asyncpg.Connection,
    pipeline: str,
    queue: str,
    retention: float,
    cutoff: datetime,
    batch: int,
) -> ArchiveTrim:
    deleted = 0
    try:
        while True:
            done: int = await conn.fetchval(query("trim_archive"), queue, cutoff, batch)
            deleted += done
            if done < batch:
                break
    except asyncpg.PostgresError as exc:
        return ArchiveTrim(pipeline, queue, retention, deleted, f"failed: {exc}")
    if deleted:
        _log.info(
            "deleted %d archived messages of %s older than the retention",
            deleted,
            queue,
            extra={"pipeline": pipeline},
        )
    return ArchiveTrim(pipeline, queue, retention, deleted)


async def _trim_joins(
    conn: asyncpg.Connection, retention: float, batch: int, problems: list[str]
) -> int:
    now: datetime = await conn.fetchval(query("clock"))
    cutoff = now - timedelta(seconds=retention)
    deleted = 0
    try:
        while True:
            done: int = await conn.fetchval(query("trim_joins"), cutoff, batch)
            deleted += done
            if done < batch:
                break
    except asyncpg.PostgresError as exc:
        problems.append(f"join cleanup failed: {exc}")
    return deleted
