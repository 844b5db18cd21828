"""install(): fresh, idempotent, concurrent, upgrades by migrations, refuses foreign schemas."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.db import connect
from orchestrator.errors import ConfigError
from orchestrator.queue import sqlfiles
from orchestrator.queue.install import (
    InstallResult,
    has_pgmq_extension,
    install,
    install_sync,
    installed_version,
)
from tests.integration.queue.helpers import (
    assert_same_catalog,
    catalog,
    catalog_versions,
    user_relations,
)
from tests.support.pg import temporary_role, with_login

NewDatabase = Callable[[], Awaitable[str]]
LATEST = sqlfiles.latest_version()


async def _versions(conn: asyncpg.Connection) -> list[tuple[object, ...]]:
    rows = await conn.fetch(
        "SELECT version, name, applied_at, functions_sha256 FROM pgmq_ext.schema_version "
        "ORDER BY version"
    )
    return [tuple(r) for r in rows]


async def _snapshot(conn: asyncpg.Connection) -> dict[str, object]:
    return {
        "catalog": await catalog(conn),
        "versions": await catalog_versions(conn),
        "schema_version": await _versions(conn),
        "relations": await user_relations(conn),
    }


async def _smoke(conn: asyncpg.Connection) -> None:
    """The API works in this database."""
    await conn.execute("SELECT pgmq.create('smoke')")
    await conn.execute("SELECT pgmq.create_partitioned('smoke_p', '10', '100')")
    for name in ("smoke", "smoke_p"):
        assert await conn.fetchval("SELECT * FROM pgmq.send($1, '{\"a\": 1}'::jsonb)", name) == 1
        [row] = await conn.fetch("SELECT * FROM pgmq.read($1, 30, 1)", name)
        assert row["message"] == {"a": 1}
        assert await conn.fetchval("SELECT pgmq.archive($1, 1::bigint)", name) is True


async def test_fresh_install_records_the_version(empty_dsn: str) -> None:
    conn = await connect(empty_dsn)
    try:
        assert await installed_version(conn) is None
        assert await has_pgmq_extension(conn) is False
        result = await install(conn)
        assert result == InstallResult("installed", LATEST)
        assert result.changed
        assert result.message() == f"installed queue layer version {LATEST}"
        assert await installed_version(conn) == LATEST
        [(version, name, applied_at, checksum)] = await _versions(conn)
        assert (version, name, checksum) == (LATEST, "fresh install", sqlfiles.functions_sha256())
        assert applied_at is not None
        await _smoke(conn)
    finally:
        await conn.close()


async def test_second_install_changes_nothing(empty_dsn: str) -> None:
    conn = await connect(empty_dsn)
    try:
        await install(conn)
        before = await _snapshot(conn)
        result = await install(conn)
        assert result == InstallResult("unchanged", LATEST)
        assert not result.changed
        assert result.message() == f"already at version {LATEST}"
        assert await _snapshot(conn) == before
    finally:
        await conn.close()


async def test_install_into_the_test_template_is_a_no_op(conn: asyncpg.Connection) -> None:
    before = await _snapshot(conn)
    assert (await install(conn)).action == "unchanged"
    assert await _snapshot(conn) == before


async def test_install_leaves_queues_and_messages_alone(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create('keep')")
    await conn.execute("SELECT pgmq.send('keep', '{}'::jsonb)")
    await conn.execute("UPDATE pgmq_ext.schema_version SET functions_sha256 = 'stale'")
    assert (await install(conn)).action == "refreshed"
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_keep") == 1


async def test_concurrent_installs_on_an_empty_database(
    empty_dsn: str, conn: asyncpg.Connection
) -> None:
    conns = [await connect(empty_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(install(c) for c in conns))
        assert sorted(r.action for r in results) == [
            "installed",
            "unchanged",
            "unchanged",
            "unchanged",
        ]
        assert_same_catalog(await catalog(conns[0]), await catalog(conn))
        assert len(await _versions(conns[0])) == 1
        await _smoke(conns[0])
    finally:
        for c in conns:
            await c.close()


async def test_schema_sql_equals_all_migrations(new_database: NewDatabase) -> None:
    fresh = await connect(await new_database())
    stepwise = await connect(await new_database())
    try:
        await fresh.execute(sqlfiles.schema_sql())
        for migration in sqlfiles.migrations():
            await stepwise.execute(migration.sql)
        assert_same_catalog(await catalog(fresh), await catalog(stepwise))
    finally:
        await fresh.close()
        await stepwise.close()


@pytest.mark.parametrize("start", range(1, LATEST))
async def test_upgrade_matches_a_fresh_install(
    new_database: NewDatabase, conn: asyncpg.Connection, start: int
) -> None:
    """A database at version `start` (its migrations applied) upgrades to what install makes."""
    old = await connect(await new_database())
    try:
        for migration in sqlfiles.migrations()[:start]:
            await old.execute(migration.sql)
        await old.execute(
            "INSERT INTO pgmq_ext.schema_version (version, name) VALUES ($1, 'as of old')", start
        )
        result = await install(old)
        assert result == InstallResult("upgraded", LATEST, start)
        assert result.message() == f"upgraded from {start} to {LATEST}"
        assert_same_catalog(await catalog(old), await catalog(conn))
        versions = await _versions(old)
        assert [v[0] for v in versions] == list(range(start, LATEST + 1))
        assert versions[-1][3] == sqlfiles.functions_sha256()
        assert (await install(old)).action == "unchanged"
        await _smoke(old)
    finally:
        await old.close()


async def test_the_catalog_comparison_sees_differences(conn: asyncpg.Connection) -> None:
    """The equality checks above are only worth something if a difference shows."""
    reference = await catalog(conn)
    changes = [
        "ALTER TABLE pgmq.meta ALTER COLUMN created_at SET DEFAULT clock_timestamp()",
        "CREATE INDEX ON pgmq_ext.schema_version (applied_at)",
        "CREATE OR REPLACE FUNCTION pgmq.purge_queue(queue_name text) RETURNS bigint "
        "LANGUAGE sql AS $$ SELECT 1::bigint $$",
        "ALTER TABLE pgmq_ext.partition_config ADD COLUMN extra int",
        "ALTER TYPE pgmq.message_record ADD ATTRIBUTE extra int",
        "COMMENT ON SCHEMA pgmq_ext IS 'changed'",
    ]
    for change in changes:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(change)
            changed = await catalog(conn)
            with pytest.raises(AssertionError):
                assert_same_catalog(changed, reference)
        finally:
            await tx.rollback()
    assert_same_catalog(await catalog(conn), reference)


async def test_changed_functions_are_reapplied(conn: asyncpg.Connection) -> None:
    reference = await catalog(conn)
    # As if the database had an older body of one function.
    await conn.execute(
        "CREATE OR REPLACE FUNCTION pgmq.purge_queue(queue_name text) RETURNS bigint "
        "LANGUAGE sql AS $$ SELECT 0::bigint $$"
    )
    await conn.execute("UPDATE pgmq_ext.schema_version SET functions_sha256 = 'older'")
    result = await install(conn)
    assert result == InstallResult("refreshed", LATEST)
    assert result.message() == f"already at version {LATEST}; updated the queue functions"
    assert_same_catalog(await catalog(conn), reference)
    assert (await install(conn)).action == "unchanged"


async def test_a_newer_database_is_refused(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO pgmq_ext.schema_version (version, name) VALUES ($1, 'future')", LATEST + 1
    )
    before = await _snapshot(conn)
    with pytest.raises(ConfigError, match=f"version {LATEST + 1}, newer than this orchestrator"):
        await install(conn)
    assert await _snapshot(conn) == before


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            "CREATE SCHEMA pgmq; CREATE TABLE pgmq.q_jobs (msg_id bigint)",
            "^schema pgmq exists but was not created by orchestrator",
        ),
        ("CREATE SCHEMA pgmq", "^schema pgmq exists but was not created by orchestrator"),
        (
            "CREATE SCHEMA pgmq_ext; CREATE TABLE pgmq_ext.mine (x int)",
            "^schema pgmq_ext exists but holds no queue layer version",
        ),
    ],
)
async def test_foreign_schema_is_refused_and_left_alone(
    empty_dsn: str, setup: str, message: str
) -> None:
    conn = await connect(empty_dsn)
    try:
        await conn.execute(setup)
        before = await _snapshot_without_versions(conn)
        with pytest.raises(ConfigError, match=message):
            await install(conn)
        assert await _snapshot_without_versions(conn) == before
    finally:
        await conn.close()


async def _snapshot_without_versions(conn: asyncpg.Connection) -> dict[str, object]:
    return {
        "catalog": await catalog(conn),
        "versions": await catalog_versions(conn),
        "relations": await user_relations(conn),
    }


@pytest.fixture
def fake_pgmq_extension() -> Iterator[Path]:
    """A stand-in `pgmq` extension (control file + script) the server can read."""
    base = Path(tempfile.mkdtemp(prefix="fake-pgmq-"))
    ext = base / "extension"
    ext.mkdir()
    (ext / "pgmq.control").write_text(
        "comment = 'stand-in for the pgmq extension (tests)'\n"
        "default_version = '1.13.0'\n"
        "relocatable = false\n"
        "schema = pgmq\n"
    )
    (ext / "pgmq--1.13.0.sql").write_text(
        "CREATE TABLE pgmq.meta (queue_name varchar NOT NULL UNIQUE, "
        "is_partitioned boolean NOT NULL, is_unlogged boolean NOT NULL, "
        "created_at timestamptz NOT NULL DEFAULT now());\n"
        "CREATE FUNCTION pgmq.create(queue_name text) RETURNS void LANGUAGE sql AS $$ $$;\n"
    )
    # The server may run as another user (as root, the embedded server does).
    for path in (base, ext):
        path.chmod(0o755)
    for path in ext.iterdir():
        path.chmod(0o644)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def test_real_extension_is_left_alone(empty_dsn: str, fake_pgmq_extension: Path) -> None:
    conn = await connect(empty_dsn)
    try:
        if await conn.fetchval("SELECT current_setting('server_version_num')::int") < 180000:
            pytest.skip("extension_control_path (for a stand-in extension) needs PostgreSQL 18")
        directory = await conn.fetchval("SHOW data_directory")
        if not os.path.isdir(directory):
            pytest.skip("the server runs elsewhere: it cannot read a stand-in extension file")
        await conn.execute(
            "SELECT set_config('extension_control_path', $1, false)",
            f"{fake_pgmq_extension}:$system",
        )
        await conn.execute("CREATE EXTENSION pgmq")
        assert await has_pgmq_extension(conn) is True
        before = await _snapshot_without_versions(conn)
        result = await install(conn)
        assert result == InstallResult("extension")
        assert not result.changed
        assert result.message() == (
            "the pgmq extension is installed in this database; leaving it alone"
        )
        assert await _snapshot_without_versions(conn) == before
        assert await conn.fetchval("SELECT to_regnamespace('pgmq_ext')") is None
    finally:
        await conn.close()


async def test_a_role_without_create_privilege_gets_a_clear_error(
    empty_dsn: str, admin_dsn: str
) -> None:
    async with temporary_role(admin_dsn, [empty_dsn], prefix="limited") as role:
        admin = await asyncpg.connect(empty_dsn)
        try:
            await admin.execute(f'REVOKE CREATE ON SCHEMA public FROM "{role}"')
            limited = await connect(with_login(empty_dsn, role))
            try:
                with pytest.raises(
                    ConfigError, match=r"^cannot install the queue layer: permission "
                ):
                    await install(limited)
                assert await installed_version(limited) is None
            finally:
                await limited.close()
            assert await admin.fetchval("SELECT to_regnamespace('pgmq')") is None
        finally:
            await admin.close()


async def test_install_sync(empty_dsn: str) -> None:
    result = await asyncio.to_thread(install_sync, empty_dsn)
    assert result.action == "installed"
    assert (await asyncio.to_thread(install_sync, empty_dsn)).action == "unchanged"
