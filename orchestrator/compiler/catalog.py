"""The state the database is in: installed layers, queues and their storage, applied pipelines.

Read-only. A database without the queue layer or the orchestrator schema reads as empty (no
queues, nothing applied), so `plan` works on a fresh database and shows the installs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from orchestrator.compiler.desired import KEEP_THRESHOLD, Partitioning, Storage
from orchestrator.compiler.render import render

if TYPE_CHECKING:
    import asyncpg

_QUERY_HEADER = re.compile(r"^-- name: ([a-z_]+)\n", re.M)


@cache
def queries() -> dict[str, str]:
    """The named queries of ``queries.sql``."""
    text = (files("orchestrator.compiler") / "queries.sql").read_text(encoding="utf-8")
    parts = _QUERY_HEADER.split(text)[1:]
    return {name: body.strip() for name, body in zip(parts[::2], parts[1::2], strict=True)}


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

    @property
    def intact(self) -> bool:
        """True when both tables exist and agree with the queue's registration."""
        partitioned = self.storage.partition is not None
        return self.has_table and self.has_archive and self.is_partitioned == partitioned


@dataclass(frozen=True)
class AppliedPipeline:
    """A row of ``orchestrator.pipelines``: what `apply` recorded for a pipeline."""

    name: str
    spec: Mapping[str, Any]
    spec_hash: str
    entry_step: str
    applied_at: datetime


@dataclass(frozen=True)
class JoinCount:
    """Join rows of one join step: still open (waiting for predecessors) and in total."""

    open: int
    total: int


@dataclass(frozen=True)
class Layers:
    """Which layers are installed, and whether they are current."""

    queue_version: int | None = None
    queue_functions_current: bool = False
    pgmq_extension: bool = False
    store_version: int | None = None
    store_current: bool = False
    has_pgmq: bool = False
    has_partitions: bool = False
    has_pipelines: bool = False
    has_joins: bool = False

    @property
    def store_installed(self) -> bool:
        """True when schema orchestrator exists (current or not)."""
        return self.store_version is not None and self.has_pipelines


@dataclass(frozen=True)
class Catalog:
    """Everything `plan` compares the desired state with."""

    layers: Layers = Layers()
    queues: Mapping[str, ActualQueue] = field(default_factory=dict)
    applied: Mapping[str, AppliedPipeline] = field(default_factory=dict)
    joins: Mapping[tuple[str, str], JoinCount] = field(default_factory=dict)


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
        applied=await read_applied(conn) if layers.has_pipelines else {},
        joins=await read_join_counts(conn) if layers.has_joins else {},
    )


async def read_layers(conn: asyncpg.Connection) -> Layers:
    """Installed layers and their versions."""
    from orchestrator.queue import sqlfiles
    from orchestrator.store.install import VERSION as STORE_VERSION
    from orchestrator.store.install import functions_sha256 as store_functions_sha256

    row = await conn.fetchrow(queries()["layers"])
    queue_version = None
    functions_current = False
    if row["has_versions"]:
        from orchestrator.queue.install import installed_version

        queue_version = await installed_version(conn)
        checksum = await conn.fetchval(queries()["queue_layer_checksum"])
        functions_current = checksum == sqlfiles.functions_sha256()
    store_version = None
    store_current = False
    if row["has_store"]:
        store = await conn.fetchrow(queries()["store_version"])
        if store is not None:
            store_version = int(store["version"])
            store_current = (
                store_version == STORE_VERSION
                and store["functions_sha256"] == store_functions_sha256()
            )
    return Layers(
        queue_version=queue_version,
        queue_functions_current=functions_current,
        pgmq_extension=bool(row["has_extension"]),
        store_version=store_version,
        store_current=store_current,
        has_pgmq=bool(row["has_pgmq"]),
        has_partitions=bool(row["has_partitions"]),
        has_pipelines=bool(row["has_pipelines"]),
        has_joins=bool(row["has_joins"]),
    )


async def read_queues(conn: asyncpg.Connection, layers: Layers) -> dict[str, ActualQueue]:
    """Every queue in ``pgmq.meta``, by name."""
    partitions = await read_partitions(conn) if layers.has_partitions else {}
    queues = {}
    for row in await conn.fetch(queries()["queues"]):
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
        )
    return queues


def _throttle(row: asyncpg.Record) -> int | None:
    try:
        return int(row["notify_throttle"])
    except (TypeError, ValueError):
        return None


async def read_partitions(conn: asyncpg.Connection) -> dict[str, Partitioning]:
    """Partitioning of every partitioned queue, by queue name."""
    result = {}
    for row in await conn.fetch(queries()["partitions"]):
        retention = float(row["retention"])
        keep = row["by"] != "msg_id" and retention >= KEEP_THRESHOLD
        result[row["name"]] = Partitioning(
            row["by"], float(row["interval"]), None if keep else retention
        )
    return result


async def read_applied(conn: asyncpg.Connection) -> dict[str, AppliedPipeline]:
    """Rows of ``orchestrator.pipelines``, by pipeline name."""
    rows = await conn.fetch(queries()["applied_pipelines"])
    return {
        row["name"]: AppliedPipeline(
            name=row["name"],
            spec=row["spec"],
            spec_hash=row["spec_hash"],
            entry_step=row["entry_step"],
            applied_at=row["applied_at"],
        )
        for row in rows
    }


async def read_join_counts(conn: asyncpg.Connection) -> dict[tuple[str, str], JoinCount]:
    """Join rows per (pipeline, step)."""
    rows = await conn.fetch(queries()["join_counts"])
    return {(r["pipeline"], r["step"]): JoinCount(r["open"], r["total"]) for r in rows}


async def read_depth(conn: asyncpg.Connection, queue: ActualQueue) -> Depth:
    """How many messages `queue` and its archive hold (tables that are gone count 0)."""
    if not (queue.has_table or queue.has_archive):
        return Depth()
    sql = render("count_messages", name=queue.name, queue=queue)
    row = await conn.fetchrow(sql)
    return Depth(int(row["messages"]), int(row["archived"]))
