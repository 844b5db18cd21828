"""Install or upgrade schema `orchestrator` (tables in `sql/schema.sql`, functions in
`sql/functions/*.sql`).

The steps are those of every package of SQL (`orchestrator.db.install`): one transaction
under a transaction-level advisory lock, so two installers at once serialize and an up-to-date
database is left unchanged. Version 1 is `sql/schema.sql`; every later version is a numbered
file `sql/migrations/NNNN_<what>.sql` (0002 and up), applied in order, each recorded in
`orchestrator.schema_version`. Numbers may have gaps; a fresh install runs schema.sql and then
every migration, so a fresh and an upgraded database end identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from orchestrator.db import install as db_install

STORE_SQL = db_install.SqlPackage(
    "orchestrator.store",
    # pg_advisory_xact_lock key of this installer: the bytes of "orchstin" as a bigint.
    lock_key=int.from_bytes(b"orchstin", "big", signed=True),
    schema_is_latest=False,
)

VERSION = STORE_SQL.latest_version()

functions_sql = STORE_SQL.functions_sql
functions_sha256 = STORE_SQL.functions_sha256


@dataclass(frozen=True)
class StoreInstallResult:
    """What `install` did: 'installed', 'upgraded', 'refreshed' (functions changed) or
    'unchanged'."""

    action: str
    version: int

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"


async def installed_version(conn: asyncpg.Connection) -> int | None:
    """Version of schema `orchestrator` in the database, None when it is missing."""
    return await db_install.installed_version(conn, STORE_SQL)


async def install(conn: asyncpg.Connection) -> StoreInstallResult:
    """Create or refresh schema `orchestrator`; idempotent and safe to run concurrently.

    Joins the caller's transaction when one is open (apply runs everything in one).
    """
    async with conn.transaction():
        await db_install.lock(conn, STORE_SQL)
        outcome = await db_install.migrate(conn, STORE_SQL, await installed_version(conn))
        return StoreInstallResult(outcome.action, outcome.version)
