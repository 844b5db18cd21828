"""The workers alive: one heartbeat row per worker process (written by `runtime.heartbeat`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from orchestrator.ops.queries import query

ALIVE = 45.0
"""A worker whose last heartbeat is older than this many seconds is taken for dead."""


@dataclass(frozen=True)
class WorkerRow:
    """One live worker process."""

    id: str
    host: str
    pid: int
    steps: tuple[str, ...]
    """The step queues it consumes."""
    started_at: datetime
    heartbeat_at: datetime
    silent_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "steps": list(self.steps),
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
        }


async def live_workers(conn: asyncpg.Connection, *, alive: float = ALIVE) -> list[WorkerRow]:
    """Workers that sent a heartbeat in the last `alive` seconds, by host and pid."""
    rows = await conn.fetch(query("workers"), alive)
    return [
        WorkerRow(
            id=str(r["id"]),
            host=r["host"],
            pid=r["pid"],
            steps=tuple(r["steps"]),
            started_at=r["started_at"],
            heartbeat_at=r["heartbeat_at"],
            silent_seconds=r["silent_seconds"],
        )
        for r in rows
    ]
