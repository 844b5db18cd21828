"""Install or upgrade the queue layer (schemas `pgmq` and `pgmq_ext`) in a database.

Everything happens in one READ COMMITTED transaction under a transaction-level advisory lock,
so two installers running at once serialize and the second finds the work done. A database
without the layer gets `schema.sql` (latest version); an older one gets the missing numbered
migrations; then the function files are re-applied when they changed since the last install.
Running `install` on an up-to-date database changes nothing.

A database where the real `pgmq` extension is installed is left alone, and so is a `pgmq`
schema this installer did not create (PGMQ installed from its SQL files, say), unless the
caller asks to adopt it (`adopt=True`, see `orchestrator.queue.adopt`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

import asyncpg

from orchestrator.errors import ConfigError
from orchestrator.queue import sqlfiles

# pg_advisory_xact_lock key of the installer: the bytes of "orchqins" as a bigint.
INSTALL_LOCK_KEY = int.from_bytes(b"orchqins", "big", signed=True)

Action = Literal["installed", "upgraded", "refreshed", "unchanged", "extension", "adopted"]


@dataclass(frozen=True)
class InstallResult:
    """What `install` did and the version the database is at now."""

    action: Action
    version: int | None = None
    previous_version: int | None = None
    report: tuple[str, ...] = ()  # what an adoption kept and changed

    @property
    def changed(self) -> bool:
        return self.action in ("installed", "upgraded", "refreshed", "adopted")

    def message(self) -> str:
        """One line for people, as `orchestrator install` prints it."""
        if self.action == "installed":
            return f"installed queue layer version {self.version}"
        if self.action == "adopted":
            return "\n".join([*self.report, f"adopted; queue layer version {self.version}"])
        if self.action == "upgraded":
            return f"upgraded from {self.previous_version} to {self.version}"
        if self.action == "refreshed":
            return f"already at version {self.version}; updated the queue functions"
        if self.action == "unchanged":
            return f"already at version {self.version}"
        return "the pgmq extension is installed in this database; leaving it alone"


async def install(conn: asyncpg.Connection, *, adopt: bool = False) -> InstallResult:
    """Install or upgrade the queue layer through `conn`; idempotent and safe to run at once.
    `adopt`: take over a PGMQ found in the database instead of leaving it alone."""
    try:
        async with conn.transaction(isolation="read_committed"):
            await conn.execute("SELECT pg_advisory_xact_lock($1)", INSTALL_LOCK_KEY)
            return await _install_locked(conn, adopt)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise ConfigError(
            f"cannot install the queue layer: {exc}; run it as a role allowed to create schemas"
        ) from None
    except asyncpg.ReadOnlySQLTransactionError:
        raise ConfigError(
            "cannot install the queue layer: the database is read-only (a standby?); "
            "connect to the primary"
        ) from None


async def install_dsn(dsn: str, *, adopt: bool = False) -> InstallResult:
    """Connect to `dsn`, install, disconnect."""
    from orchestrator.db import connect

    conn = await connect(dsn)
    try:
        return await install(conn, adopt=adopt)
    finally:
        await conn.close()


def install_sync(dsn: str) -> InstallResult:
    """`install_dsn` for synchronous callers (not from inside a running event loop)."""
    return asyncio.run(install_dsn(dsn))


async def has_pgmq_extension(conn: asyncpg.Connection) -> bool:
    """True when the real `pgmq` extension is installed in the database."""
    query = "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pgmq')"
    return bool(await conn.fetchval(query))


async def installed_version(conn: asyncpg.Connection) -> int | None:
    """Version of the queue layer in the database, None when it is not installed."""
    if await conn.fetchval("SELECT to_regclass('pgmq_ext.schema_version')") is None:
        return None
    version: int | None = await conn.fetchval("SELECT max(version) FROM pgmq_ext.schema_version")
    return version


async def _install_locked(conn: asyncpg.Connection, adopt: bool) -> InstallResult:
    extension = await has_pgmq_extension(conn)
    if extension and not adopt:
        return InstallResult("extension")
    current = await installed_version(conn)
    latest = sqlfiles.latest_version()
    if current is None and adopt and (extension or await _has_foreign_pgmq(conn)):
        return await _adopt(conn, extension)
    if current is None:
        await _fresh_install(conn)
        return InstallResult("installed", latest)
    if current > latest:
        raise ConfigError(
            f"the database has queue layer version {current}, newer than this orchestrator "
            f"knows ({latest}); upgrade orchestrator"
        )
    for migration in sqlfiles.pending_migrations(current):
        await conn.execute(migration.sql)
        await _record_version(conn, migration.version, migration.name)
    refreshed = await _apply_functions_if_changed(conn, latest)
    if current < latest:
        return InstallResult("upgraded", latest, current)
    return InstallResult("refreshed" if refreshed else "unchanged", latest)


async def _fresh_install(conn: asyncpg.Connection) -> None:
    taken = await conn.fetchval(
        "SELECT array_agg(nspname::text ORDER BY nspname) FROM pg_namespace "
        "WHERE nspname IN ('pgmq', 'pgmq_ext')"
    )
    if taken and "pgmq" in taken:
        raise ConfigError(
            "schema pgmq exists but was not created by orchestrator (PGMQ installed from its "
            "SQL files?); leaving it alone. Adopt it with `orchestrator install --adopt`, drop "
            "it or use another database."
        )
    if taken:
        raise ConfigError(
            "schema pgmq_ext exists but holds no queue layer version (a failed or foreign "
            "install?); leaving it alone. Drop it or use another database."
        )
    await conn.execute(sqlfiles.schema_sql())
    await _record_version(conn, sqlfiles.latest_version(), "fresh install")
    await _apply_functions_if_changed(conn, sqlfiles.latest_version())


async def _has_foreign_pgmq(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT to_regnamespace('pgmq') IS NOT NULL"))


async def _adopt(conn: asyncpg.Connection, extension: bool) -> InstallResult:
    """Take over the PGMQ in the database (see orchestrator.queue.adopt)."""
    from orchestrator.queue import adopt

    found = await adopt.set_aside(conn, extension=extension)
    await _fresh_install(conn)
    await adopt.bring_back(conn)
    return InstallResult("adopted", sqlfiles.latest_version(), report=tuple(found.lines()))


async def _record_version(conn: asyncpg.Connection, version: int, name: str) -> None:
    await conn.execute(
        "INSERT INTO pgmq_ext.schema_version (version, name) VALUES ($1, $2)", version, name
    )


async def _apply_functions_if_changed(conn: asyncpg.Connection, version: int) -> bool:
    """Re-apply the function files unless the recorded checksum matches; True if applied."""
    checksum = sqlfiles.functions_sha256()
    recorded = await conn.fetchval(
        "SELECT functions_sha256 FROM pgmq_ext.schema_version WHERE version = $1", version
    )
    if recorded == checksum:
        return False
    await conn.execute(sqlfiles.functions_sql())
    await conn.execute(
        "UPDATE pgmq_ext.schema_version SET functions_sha256 = $1 WHERE version = $2",
        checksum,
        version,
    )
    return True
