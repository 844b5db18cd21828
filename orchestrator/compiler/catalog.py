"""The catalog `plan` compares with: queues and their storage, join rows, topic bindings,
and (read through `orchestrator.state`) the installed layers and the applied pipelines.

Read-only. A database without the queue layer or the orchestrator schema reads as empty (no
queues, nothing applied), so `plan` works on a fresh database and shows the installs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.compiler.desired import KEEP_THRESHOLD, PartitionLayout, Storage
from orchestrator.compiler.render import render
from orchestrator.db.named_sql import named_queries
from orchestrator.state import AppliedRecord, Layers, read_applied_records, read_layers

if TYPE_CHECKING:
    import asyncpg

_Q = named_queries("orchestrator.compiler")


@dataclass(frozen=True)
class ActualQueue:
    """A queue as the catalog shows it."""

    name: str
    is_partitioned: bool
    has_table: bool
    has_archive: bool
    meta_unlogged: bool
    storage: Storage
    notify_broken: bool = False
    """A notification trigger whose throttle sequence is gone (every insert would fail)."""
    run_id_tables: frozenset[str] = frozenset()
    """Tables (``q``, ``a``) that carry the ``headers->>'run_id'`` index."""
    fifo_index: bool = False
    """The queue table carries the FIFO group index (`pgmq.create_fifo_index`)."""

    @property
    def intact(self) -> bool:
        """True when both tables exist and agree with the queue's registration."""
        partitioned = self.storage.partition is not None
        return self.has_table and self.has_archive and self.is_partitioned == partitioned


@dataclass(frozen=True)
class JoinCount:
    """Join rows of one join step: still open (waiting for predecessors) and in total."""

    open: int
    total: int


@dataclass(frozen=True)
class Catalog:
    """Everything `plan` compares the desired state with."""

    layers: Layers = field(default_factory=Layers)
    queues: Mapping[str, ActualQueue] = field(default_factory=dict)
    applied: Mapping[str, AppliedRecord] = field(default_factory=dict)
    joins: Mapping[tuple[str, str], JoinCount] = field(default_factory=dict)
    bindings: frozenset[tuple[str, str]] = frozenset()
    """Topic bindings of the queue layer, as (pattern, queue)."""


@dataclass(frozen=True)
class Depth:
    """Messages a queue holds (waiting or in flight) and messages in its archive."""

    messages: int = 0
    archived: int = 0

    @property
    def empty(self) -> bool:
        """True when dropping the queue loses nothing."""
        return self.messages == 0 and self.archived == 0

    def describe(self) -> str:
        """``holds 12 messages and 40 archived`` / ``empty``."""
        if self.empty:
            return "empty"
        text = f"holds {_count(self.messages, 'message')}"
        return f"{text} and {self.archived} archived" if self.archived else text


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


async def read_catalog(conn: asyncpg.Connection) -> Catalog:
    """The current state of the database behind `conn`."""
    layers = await read_layers(conn)
    return Catalog(
        layers=layers,
        queues=await read_queues(conn, layers) if layers.has_pgmq else {},
        applied=await read_applied_records(conn) if layers.has_pipelines else {},
        joins=await read_join_counts(conn) if layers.has_joins else {},
        bindings=await read_bindings(conn) if layers.has_topics else frozenset(),
    )


async def read_queues(conn: asyncpg.Connection, layers: Layers) -> dict[str, ActualQueue]:
    """Every queue in ``pgmq.meta``, by name."""
    partitions = await read_partitions(conn) if layers.has_partitions else {}
    queues = {}
    for row in await conn.fetch(_Q["queues"]):
        name = row["name"]
        notify_ms = _throttle(row) if row["has_notify"] else None
        storage = Storage(partitions.get(name), bool(row["table_unlogged"]), notify_ms)
        indexed = {"q"} if row["queue_run_id_index"] else set()
        if row["archive_run_id_index"]:
            indexed.add("a")
        queues[name] = ActualQueue(
            name=name,
            is_partitioned=bool(row["is_partitioned"]),
            has_table=bool(row["has_table"]),
            has_archive=bool(row["has_archive"]),
            meta_unlogged=bool(row["is_unlogged"]),
            storage=storage,
            notify_broken=bool(row["has_notify"])
            and notify_ms != 0
            and not row["notify_sequence_ok"],
            run_id_tables=frozenset(indexed),
            fifo_index=bool(row["fifo_index"]),
        )
    return queues


def _throttle(row: asyncpg.Record) -> int | None:
    try:
        return int(row["notify_throttle"])
    except (TypeError, ValueError):
        return None


async def read_partitions(conn: asyncpg.Connection) -> dict[str, PartitionLayout]:
    """PartitionLayout of every partitioned queue, by queue name."""
    result = {}
    for row in await conn.fetch(_Q["partitions"]):
        retention = float(row["retention"])
        keep = row["by"] != "msg_id" and retention >= KEEP_THRESHOLD
        result[row["name"]] = PartitionLayout(
            row["by"], float(row["interval"]), None if keep else retention
        )
    return result


async def read_join_counts(conn: asyncpg.Connection) -> dict[tuple[str, str], JoinCount]:
    """Join rows per (pipeline, step)."""
    rows = await conn.fetch(_Q["join_counts"])
    return {(r["pipeline"], r["step"]): JoinCount(r["open"], r["total"]) for r in rows}


async def read_bindings(conn: asyncpg.Connection) -> frozenset[tuple[str, str]]:
    """Every topic binding, as (pattern, queue)."""
    return frozenset((r["pattern"], r["queue"]) for r in await conn.fetch(_Q["topic_bindings"]))


async def read_depth(conn: asyncpg.Connection, queue: ActualQueue) -> Depth:
    """How many messages `queue` and its archive hold (tables that are gone count 0)."""
    if not (queue.has_table or queue.has_archive):
        return Depth()
    sql = render("count_messages", name=queue.name, queue=queue)
    row = await conn.fetchrow(sql)
    return Depth(int(row["messages"]), int(row["archived"]))
