"""Install or upgrade schema `orchestrator` (tables in `sql/schema.sql`, functions in
`sql/functions/*.sql`).

Runs in one transaction under a transaction-level advisory lock, like the queue layer's
installer: two installers at once serialize, and an up-to-date database is left unchanged.
Version 1 is the first; later versions will add numbered files under `sql/migrations/`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import asyncpg

# pg_advisory_xact_lock key of this installer: the bytes of "orchstin" as a bigint.
INSTALL_LOCK_KEY = int.from_bytes(b"orchstin", "big", signed=True)
VERSION = 1


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
                VERSION,
                "fresh install",
            )
            action = "installed"
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
