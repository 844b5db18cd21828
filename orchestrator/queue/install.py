"""Install or upgrade the queue layer (schemas `pgmq` and `pgmq_ext`) in a database.

The steps are those of every package of SQL (`orchestrator.db.install`); this module adds what
is particular to the queue layer. Everything happens in one READ COMMITTED transaction under
a transaction-level advisory lock,
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

from orchestrator.db import install as db_install
from orchestrator.db.named_sql import named_queries
from orchestrator.errors import ConfigError
from orchestrator.queue.sqlfiles import QUEUE_SQL

_Q = named_queries("orchestrator.queue")

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
            await db_install.lock(conn, QUEUE_SQL)
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
    return bool(await conn.fetchval(_Q["has_pgmq_extension"]))


async def installed_version(conn: asyncpg.Connection) -> int | None:
    """Version of the queue layer in the database, None when it is not installed."""
    return await db_install.installed_version(conn, QUEUE_SQL)


async def _install_locked(conn: asyncpg.Connection, adopt: bool) -> InstallResult:
    extension = await has_pgmq_extension(conn)
    if extension and not adopt:
        return InstallResult("extension")
    current = await installed_version(conn)
    latest = QUEUE_SQL.latest_version()
    if current is None and adopt and (extension or "pgmq" in await _taken_schemas(conn)):
        return await _adopt(conn, extension)
    if current is None:
        await _refuse_foreign_schemas(conn)
    elif current > latest:
        raise ConfigError(
            f"the database has queue layer version {current}, newer than this orchestrator "
            f"knows ({latest}); upgrade orchestrator"
        )
    outcome = await db_install.migrate(conn, QUEUE_SQL, current)
    return InstallResult(outcome.action, outcome.version, outcome.previous_version)


async def _taken_schemas(conn: asyncpg.Connection) -> list[str]:
    return list(await conn.fetchval(_Q["taken_schemas"]) or [])


async def _adopt(conn: asyncpg.Connection, extension: bool) -> InstallResult:
    """Take over the PGMQ in the database (see orchestrator.queue.adopt)."""
    from orchestrator.queue import adopt

    found = await adopt.set_aside(conn, extension=extension)
    outcome = await db_install.migrate(conn, QUEUE_SQL, None)
    await adopt.bring_back(conn)
    return InstallResult("adopted", outcome.version, report=tuple(found.lines()))


async def _refuse_foreign_schemas(conn: asyncpg.Connection) -> None:
    taken = await _taken_schemas(conn)
    if "pgmq" in taken:
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
