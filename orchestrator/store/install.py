"""Install or upgrade schema `orchestrator` (tables in `sql/schema.sql`, functions in
`sql/functions/*.sql`).

Runs in one transaction under a transaction-level advisory lock, like the queue layer's
installer: two installers at once serialize, and an up-to-date database is left unchanged.
Version 1 is `sql/schema.sql`; every later version is a numbered file
`sql/migrations/NNNN_<what>.sql` (0002 and up), applied in order, each recorded in
`orchestrator.schema_version`. Numbers may have gaps; a fresh install runs schema.sql and then
every migration, so a fresh and an upgraded database end identical.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import asyncpg

# pg_advisory_xact_lock key of this installer: the bytes of "orchstin" as a bigint.
INSTALL_LOCK_KEY = int.from_bytes(b"orchstin", "big", signed=True)


def _migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) of every `sql/migrations/NNNN_*.sql`, in number order."""
    folder = files("orchestrator.store") / "sql" / "migrations"
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql") and entry.name[:4].isdigit():
            found.append((int(entry.name[:4]), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


VERSION = max([1, *(number for number, _, _ in _migrations())])


@dataclass(frozen=True)
class StoreInstallResult:
    """What `install` did: 'installed', 'refreshed' (functions changed) or 'unchanged'."""

    action: str
    version: int

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"


def _read(name: str) -> str:
    return (files("orchestrator.store") / "sql" / name).read_text(encoding="utf-8")


@cache
def functions_sql() -> str:
    """Every function file of the store, concatenated in file order."""
    folder = files("orchestrator.store") / "sql" / "functions"
    entries = sorted((e for e in folder.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name)
    return "\n".join(f"-- {e.name}\n{e.read_text(encoding='utf-8')}" for e in entries)


def functions_sha256() -> str:
    return hashlib.sha256(functions_sql().encode()).hexdigest()


async def installed_version(conn: asyncpg.Connection) -> int | None:
    """Version of schema `orchestrator` in the database, None when it is missing."""
    if await conn.fetchval("SELECT to_regclass('orchestrator.schema_version')") is None:
        return None
    version: int | None = await conn.fetchval(
        "SELECT max(version) FROM orchestrator.schema_version"
    )
    return version


async def install(conn: asyncpg.Connection) -> StoreInstallResult:
    """Create or refresh schema `orchestrator`; idempotent and safe to run concurrently.

    Joins the caller's transaction when one is open (apply runs everything in one).
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", INSTALL_LOCK_KEY)
        current = await installed_version(conn)
        action = "unchanged"
        if current is None:
            await conn.execute(_read("schema.sql"))
            await conn.execute(
                "INSERT INTO orchestrator.schema_version (version, name) VALUES ($1, $2)",
                1,
                "fresh install",
            )
            action = "installed"
            current = 1
        for number, name, sql in _migrations():
            if number > current:
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO orchestrator.schema_version (version, name) VALUES ($1, $2)",
                    number,
                    name,
                )
                action = "installed" if action == "installed" else "upgraded"
        checksum = functions_sha256()
        recorded = await conn.fetchval(
            "SELECT functions_sha256 FROM orchestrator.schema_version WHERE version = $1", VERSION
        )
        if recorded != checksum:
            await conn.execute(functions_sql())
            await conn.execute(
                "UPDATE orchestrator.schema_version SET functions_sha256 = $1 WHERE version = $2",
                checksum,
                VERSION,
            )
            if action == "unchanged":
                action = "refreshed"
        return StoreInstallResult(action, VERSION)
