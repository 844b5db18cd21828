"""Managed PostgreSQL (RDS, Cloud SQL, Supabase): no superuser, only a role that owns its
database. `install` and `apply --grant` work from scratch as that owner, and the granted
worker role runs the pipeline."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from orchestrator.db import connect
from tests.deployment.support import ok
from tests.integration.process.support import EFFECTS_TABLE, Project, make_project
from tests.support.pg import with_database, with_login


@dataclass(frozen=True)
class Managed:
    owner_dsn: str
    worker_dsn: str
    worker: str


def as_role(dsn: str, role: str, database: str) -> str:
    return with_database(with_login(dsn, role, "secret"), database)


@pytest.fixture
async def managed(admin_dsn: str) -> AsyncIterator[Managed]:
    """A database owned by a non-superuser role without CREATEDB or CREATEROLE, and a worker
    role with nothing granted yet: what a managed service's administrator sets up."""
    tag = uuid.uuid4().hex[:10]
    owner, worker, database = f"owner_{tag}", f"worker_{tag}", f"managed_{tag}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(
            f"CREATE ROLE {owner} LOGIN PASSWORD 'secret' NOSUPERUSER NOCREATEDB NOCREATEROLE"
        )
        await admin.execute(f"CREATE ROLE {worker} LOGIN PASSWORD 'secret' NOSUPERUSER")
        await admin.execute(f"CREATE DATABASE {database} OWNER {owner}")
        await admin.execute(f"REVOKE ALL ON DATABASE {database} FROM PUBLIC")
        await admin.execute(f"GRANT CONNECT ON DATABASE {database} TO {worker}")
    finally:
        await admin.close()
    yield Managed(as_role(admin_dsn, owner, database), as_role(admin_dsn, worker, database), worker)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {worker}")
        await admin.execute(f"DROP ROLE IF EXISTS {owner}")
    finally:
        await admin.close()


async def test_an_owner_installs_and_applies_from_scratch_and_a_granted_worker_runs(
    managed: Managed, tmp_path: Path
) -> None:
    project: Project = make_project(tmp_path)
    conn = await connect(managed.owner_dsn)
    try:
        assert (
            await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            is False
        )
        assert (
            await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql'") == 0
        )
    finally:
        await conn.close()

    assert "installed" in ok(project.cli("install", "--dsn", managed.owner_dsn))
    applied = ok(project.cli("apply", "--dsn", managed.owner_dsn, "--grant", managed.worker))
    assert f"Granted role {managed.worker}" in applied
    conn = await connect(managed.owner_dsn)
    try:
        await conn.execute(EFFECTS_TABLE)
        await conn.execute(f"GRANT SELECT, INSERT ON effects TO {managed.worker}")
        await conn.execute(f"GRANT USAGE ON SEQUENCE effects_id_seq TO {managed.worker}")
        # Still nothing a managed service refuses: no extension came with the install.
        assert (
            await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql'") == 0
        )
    finally:
        await conn.close()

    runs = ok(project.cli("send", "chain", '{"n": 1}', "--dsn", managed.worker_dsn)).split()
    ok(project.cli("run", "--drain", "--dsn", managed.worker_dsn))
    conn = await connect(managed.owner_dsn)
    try:
        steps = await conn.fetch("SELECT step FROM effects WHERE run_id = $1 ORDER BY id", runs[0])
        assert [r["step"] for r in steps] == ["first", "second", "third"]
    finally:
        await conn.close()
    # The worker role cannot change the schema.
    worker = await connect(managed.worker_dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await worker.execute("CREATE TABLE orchestrator.mine (x int)")
    finally:
        await worker.close()
    # apply again as the owner is a no-op; run as the worker finds the database applied.
    assert "No changes." in ok(project.cli("apply", "--dsn", managed.owner_dsn))
