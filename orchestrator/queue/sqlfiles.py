"""The queue layer's SQL, shipped as package data in `orchestrator/queue/sql/`.

- `schema.sql`: tables and types at the latest version, for a fresh install;
- `migrations/NNNN_name.sql`: the same schema built step by step; version N is the database
  after migration N, so `0001` alone is the oldest install;
- `functions/*.sql`: every function, applied in file order with CREATE OR REPLACE after each
  install or upgrade (a migration drops a function first when its signature changes).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str


def _sql_dir() -> Traversable:
    return files("orchestrator.queue") / "sql"


def _sql_files(folder: str) -> list[Traversable]:
    entries = (_sql_dir() / folder).iterdir()
    return sorted((e for e in entries if e.name.endswith(".sql")), key=lambda e: e.name)


def schema_sql() -> str:
    """DDL of the latest version, for a database without the queue layer."""
    return (_sql_dir() / "schema.sql").read_text(encoding="utf-8")


def _parse_migration(entry: Traversable) -> Migration:
    match = _MIGRATION_NAME.match(entry.name)
    if match is None:
        raise ValueError(f"migration file {entry.name!r} is not named NNNN_name.sql")
    return Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8"))


@cache
def migrations() -> tuple[Migration, ...]:
    """All migrations in order; versions run 1, 2, 3, ... without gaps."""
    found = tuple(_parse_migration(e) for e in _sql_files("migrations"))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migration versions must be 1..N without gaps, found {versions}")
    return found


def latest_version() -> int:
    """The version a fresh install creates and every upgrade ends at."""
    return migrations()[-1].version


def pending_migrations(installed: int) -> tuple[Migration, ...]:
    """Migrations that bring a database at version `installed` to the latest."""
    return tuple(m for m in migrations() if m.version > installed)


@cache
def functions_sql() -> str:
    """All function files, concatenated in order."""
    parts = [f"-- {e.name}\n{e.read_text(encoding='utf-8')}" for e in _sql_files("functions")]
    return "\n".join(parts)


def functions_sha256() -> str:
    """Checksum of the function files: an install re-applies them only when it changed."""
    return hashlib.sha256(functions_sql().encode()).hexdigest()
