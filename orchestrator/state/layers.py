"""Which layers the database has, at which versions, and whether their functions are current.

One query answers which parts exist; the version tables of both schemas are read only when
they exist, so a fresh database reads as "nothing installed" rather than failing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.db.named_sql import named_queries
from orchestrator.errors import SchemaMissing
from orchestrator.queue import sqlfiles
from orchestrator.store.install import VERSION as STORE_VERSION
from orchestrator.store.install import functions_sha256 as store_functions_sha256

if TYPE_CHECKING:
    import asyncpg

_Q = named_queries("orchestrator.state")


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
    has_topics: bool = False
    has_ops_functions: bool = False
    has_queue_versions: bool = False
    has_store_versions: bool = False

    @property
    def store_installed(self) -> bool:
        """True when schema orchestrator exists (current or not)."""
        return self.store_version is not None and self.has_pipelines

    @property
    def queue_present(self) -> bool:
        """True when the queue layer is there: the pgmq extension or this project's install."""
        return self.pgmq_extension or (self.has_pgmq and self.has_queue_versions)

    @property
    def store_present(self) -> bool:
        """True when schema orchestrator has its version table and its pipelines table."""
        return self.has_store_versions and self.has_pipelines


async def read_layers(conn: asyncpg.Connection, *, versions: bool = True) -> Layers:
    """Installed layers and their versions (`versions=False`: which parts exist, without
    reading the version tables, which a worker role may not be allowed to read)."""
    row = await conn.fetchrow(_Q["layers"])
    queue = store = None
    if versions and row["has_versions"]:
        queue = await conn.fetchrow(_Q["queue_version"])
    if versions and row["has_store"]:
        store = await conn.fetchrow(_Q["store_version"])
    store_version = None if store is None else int(store["version"])
    return Layers(
        queue_version=None if queue is None else int(queue["version"]),
        queue_functions_current=queue is not None
        and queue["functions_sha256"] == sqlfiles.functions_sha256(),
        pgmq_extension=bool(row["has_extension"]),
        store_version=store_version,
        store_current=store is not None
        and store_version == STORE_VERSION
        and store["functions_sha256"] == store_functions_sha256(),
        has_pgmq=bool(row["has_pgmq"]),
        has_partitions=bool(row["has_partitions"]),
        has_pipelines=bool(row["has_pipelines"]),
        has_joins=bool(row["has_joins"]),
        has_topics=bool(row["has_topics"]),
        has_ops_functions=bool(row["has_ops_functions"]),
        has_queue_versions=bool(row["has_versions"]),
        has_store_versions=bool(row["has_store"]),
    )


async def ensure_prepared(conn: asyncpg.Connection) -> Layers:
    """Which parts exist, or `SchemaMissing` unless the queue layer, schema orchestrator and the
    operations' functions are all in the database."""
    layers = await read_layers(conn, versions=False)
    if not layers.has_pgmq or not layers.has_pipelines:
        raise SchemaMissing(
            "this database has no pipelines yet; run `orchestrator apply` to create them"
        )
    if not layers.has_ops_functions:
        raise SchemaMissing(
            "the orchestrator functions in this database are older than this version; "
            "run `orchestrator apply` to update them"
        )
    return layers


async def missing_queues(conn: asyncpg.Connection, queues: Iterable[str]) -> list[str]:
    """Which of `queues` have no table in schema pgmq (sorted)."""
    return [row["name"] for row in await conn.fetch(_Q["missing_queues"], list(queues))]
