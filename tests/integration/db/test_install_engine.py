"""The one installer on a package of SQL written for the test: schema.sql is version 1 and
numbered migrations (with a gap) follow, as the store's layout allows.

The package lives in a temporary directory put on sys.path, so the installer reads it through
importlib.resources exactly as it reads `orchestrator.queue` and `orchestrator.store`.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.db import install as db_install
from orchestrator.db.install import SqlPackage

QUERIES = """
-- name: version_table
-- The version table.
SELECT to_regclass('fake.schema_version')

-- name: installed_version
-- The version.
SELECT max(version) FROM fake.schema_version

-- name: record_version
-- Record a version.
INSERT INTO fake.schema_version (version, name) VALUES ($1, $2)

-- name: recorded_checksum
-- The checksum recorded.
SELECT functions_sha256 FROM fake.schema_version WHERE version = $1

-- name: record_checksum
-- Record a checksum.
UPDATE fake.schema_version SET functions_sha256 = $1 WHERE version = $2
"""

SCHEMA = """
CREATE SCHEMA fake;
CREATE TABLE fake.schema_version (version integer PRIMARY KEY, name text NOT NULL,
                                  functions_sha256 text);
CREATE TABLE fake.items (id integer PRIMARY KEY);
"""


@pytest.fixture
def sql_package(tmp_path: Path) -> Iterator[tuple[SqlPackage, Path]]:
    name = f"fake_sql_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    (root / "sql" / "migrations").mkdir(parents=True)
    (root / "sql" / "functions").mkdir()
    (root / "__init__.py").write_text("")
    (root / "sql" / "queries.sql").write_text(QUERIES)
    (root / "sql" / "schema.sql").write_text(SCHEMA)
    (root / "sql" / "functions" / "10_count.sql").write_text(
        "CREATE OR REPLACE FUNCTION fake.count() RETURNS bigint LANGUAGE sql "
        "AS $$ SELECT count(*) FROM fake.items $$;"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield SqlPackage(name, lock_key=42, schema_is_latest=False), root / "sql"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


async def _install(conn: asyncpg.Connection, package: SqlPackage) -> db_install.Outcome:
    async with conn.transaction():
        await db_install.lock(conn, package)
        current = await db_install.installed_version(conn, package)
        return await db_install.migrate(conn, package, current)


async def _versions(conn: asyncpg.Connection) -> list[tuple[int, str]]:
    rows = await conn.fetch("SELECT version, name FROM fake.schema_version ORDER BY version")
    return [(r["version"], r["name"]) for r in rows]


async def test_fresh_install_runs_the_schema_then_every_migration(
    empty_dsn: str, sql_package: tuple[SqlPackage, Path]
) -> None:
    package, sql = sql_package
    (sql / "migrations" / "0002_labels.sql").write_text("ALTER TABLE fake.items ADD label text;")
    (sql / "migrations" / "0005_notes.sql").write_text("ALTER TABLE fake.items ADD note text;")
    conn = await asyncpg.connect(empty_dsn)
    try:
        assert await db_install.installed_version(conn, package) is None
        outcome = await _install(conn, package)
        assert (outcome.action, outcome.version) == ("installed", 5)
        assert await _versions(conn) == [(1, "fresh install"), (2, "labels"), (5, "notes")]
        await conn.execute("INSERT INTO fake.items VALUES (1, 'a', 'b')")
        assert await conn.fetchval("SELECT fake.count()") == 1
        assert (await _install(conn, package)).action == "unchanged"
    finally:
        await conn.close()


async def test_an_older_database_gets_the_missing_migrations_and_new_functions(
    empty_dsn: str, sql_package: tuple[SqlPackage, Path]
) -> None:
    package, sql = sql_package
    conn = await asyncpg.connect(empty_dsn)
    try:
        assert (await _install(conn, package)).version == 1
        (sql / "migrations" / "0003_labels.sql").write_text(
            "ALTER TABLE fake.items ADD label text;"
        )
        (sql / "functions" / "20_labels.sql").write_text(
            "CREATE OR REPLACE FUNCTION fake.labels() RETURNS text[] LANGUAGE sql "
            "AS $$ SELECT array_agg(label) FROM fake.items $$;"
        )
        # A package's files are read once per process: a new value reads them again.
        upgraded = SqlPackage(package.package, lock_key=43, schema_is_latest=False)
        outcome = await _install(conn, upgraded)
        assert (outcome.action, outcome.version, outcome.previous_version) == ("upgraded", 3, 1)
        assert await _versions(conn) == [(1, "fresh install"), (3, "labels")]
        assert await conn.fetchval("SELECT fake.labels()") is None
        recorded = await conn.fetchval(
            "SELECT functions_sha256 FROM fake.schema_version WHERE version = 3"
        )
        assert recorded == upgraded.functions_sha256()
    finally:
        await conn.close()
