"""One installer for a package of SQL: a full schema, numbered migrations, function files.

A package of SQL lives in `<package>/sql/`:
- `schema.sql`: the tables and types for a database without them;
- `migrations/NNNN_<what>.sql`: the changes that bring an older database forward, applied in
  number order, each recorded in the package's version table;
- `functions/*.sql`: every function, written `CREATE OR REPLACE` and applied in file order
  whenever their checksum differs from the one recorded for the current version;
- `queries.sql`: the version-table queries every package answers (`version_table`,
  `installed_version`, `record_version`, `recorded_checksum`, `record_checksum`).

The queue layer's `schema.sql` is the latest version (its migrations 0001..N rebuild it step by
step); the store's `schema.sql` is version 1 and its migrations (0002 and up, gaps allowed) come
after it. `install` runs in the caller's transaction under a transaction-level advisory lock, so
two installers at once serialize and an up-to-date database is left unchanged.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Literal

import asyncpg

from orchestrator.db.named_sql import named_queries

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

Action = Literal["installed", "upgraded", "refreshed", "unchanged"]


@dataclass(frozen=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class SqlPackage:
    """Where a package's SQL is and how its versions count."""

    package: str
    lock_key: int
    """pg_advisory_xact_lock key its installs take."""
    schema_is_latest: bool
    """True: `schema.sql` is the latest version; False: it is version 1, migrations follow."""

    def folder(self) -> Traversable:
        return files(self.package) / "sql"

    def schema_sql(self) -> str:
        """DDL for a database without the package's schema."""
        return (self.folder() / "schema.sql").read_text(encoding="utf-8")

    def migrations(self) -> tuple[Migration, ...]:
        """All migrations in version order."""
        return _migrations(self)

    def base_version(self) -> int:
        """The version `schema.sql` creates."""
        return self.latest_version() if self.schema_is_latest else 1

    def latest_version(self) -> int:
        """The version a fresh install or an upgrade ends at."""
        found = self.migrations()
        return found[-1].version if found else 1

    def pending_migrations(self, installed: int) -> tuple[Migration, ...]:
        """Migrations that bring a database at version `installed` to the latest."""
        return tuple(m for m in self.migrations() if m.version > installed)

    def functions_sql(self) -> str:
        """All function files, concatenated in file order."""
        return _functions_sql(self)

    def functions_sha256(self) -> str:
        """Checksum of the function files: an install re-applies them only when it changed."""
        return hashlib.sha256(self.functions_sql().encode()).hexdigest()


@dataclass(frozen=True)
class Outcome:
    """What an install did, the version the database is at now and the one it was at."""

    action: Action
    version: int
    previous_version: int | None = None


def _sql_files(package: SqlPackage, folder: str) -> list[Traversable]:
    entry = package.folder() / folder
    if not entry.is_dir():
        return []
    return sorted((e for e in entry.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name)


def _parse_migration(entry: Traversable) -> Migration:
    match = _MIGRATION_NAME.match(entry.name)
    if match is None:
        raise ValueError(f"migration file {entry.name!r} is not named NNNN_name.sql")
    return Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8"))


@cache
def _migrations(package: SqlPackage) -> tuple[Migration, ...]:
    found = tuple(_parse_migration(e) for e in _sql_files(package, "migrations"))
    versions = [m.version for m in found]
    if package.schema_is_latest and versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migration versions must be 1..N without gaps, found {versions}")
    if not package.schema_is_latest and (
        versions != sorted(set(versions)) or any(v < 2 for v in versions)
    ):
        raise ValueError(f"migration versions must be distinct and from 2 up, found {versions}")
    return found


@cache
def _functions_sql(package: SqlPackage) -> str:
    entries = _sql_files(package, "functions")
    return "\n".join(f"-- {e.name}\n{e.read_text(encoding='utf-8')}" for e in entries)


async def installed_version(conn: asyncpg.Connection, package: SqlPackage) -> int | None:
    """The package's version in the database, None when its version table is missing."""
    queries = named_queries(package.package)
    if await conn.fetchval(queries["version_table"]) is None:
        return None
    version: int | None = await conn.fetchval(queries["installed_version"])
    return version


async def migrate(conn: asyncpg.Connection, package: SqlPackage, current: int | None) -> Outcome:
    """Bring the database from version `current` (None: not installed) to the latest, then
    re-apply the functions if they changed. The caller holds the lock (`lock`)."""
    latest = package.latest_version()
    if current is None:
        await conn.execute(package.schema_sql())
        await _record_version(conn, package, package.base_version(), "fresh install")
    for migration in package.pending_migrations(
        package.base_version() if current is None else current
    ):
        await conn.execute(migration.sql)
        await _record_version(conn, package, migration.version, migration.name)
    refreshed = await _apply_functions_if_changed(conn, package, latest)
    if current is None:
        return Outcome("installed", latest)
    if current < latest:
        return Outcome("upgraded", latest, current)
    return Outcome("refreshed" if refreshed else "unchanged", latest)


async def lock(conn: asyncpg.Connection, package: SqlPackage) -> None:
    """Take the package's install lock until the end of the current transaction."""
    await conn.execute(named_queries("orchestrator.db")["install_lock"], package.lock_key)


async def _record_version(
    conn: asyncpg.Connection, package: SqlPackage, version: int, name: str
) -> None:
    await conn.execute(named_queries(package.package)["record_version"], version, name)


async def _apply_functions_if_changed(
    conn: asyncpg.Connection, package: SqlPackage, version: int
) -> bool:
    """Re-apply the function files unless the recorded checksum matches; True if applied."""
    queries = named_queries(package.package)
    checksum = package.functions_sha256()
    if await conn.fetchval(queries["recorded_checksum"], version) == checksum:
        return False
    await conn.execute(package.functions_sql())
    await conn.execute(queries["record_checksum"], checksum, version)
    return True
