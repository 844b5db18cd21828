"""Real PostgreSQL for every test, never a mock.

Server: `DATABASE_URL` when set; else a testcontainers PostgreSQL when a Docker engine answers;
else one embedded server per test session (pgdata inside the project, deleted afterwards).
The queue layer is installed once into a template database; each test that asks for `dsn`
gets a fresh database created from it, dropped (WITH FORCE) after the test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.db import connect
from orchestrator.db import embedded as embedded_db
from tests.support.pg import temporary_database, with_database

ROOT = Path(__file__).resolve().parent.parent


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_server() -> Iterator[dict[str, object]]:
    """Admin DSN of the server the tests use, plus how it was obtained."""
    if os.environ.get("DATABASE_URL"):
        yield {"dsn": os.environ["DATABASE_URL"], "kind": "env", "pgdata": None}
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:18", driver=None) as pg:
            yield {"dsn": pg.get_connection_url(), "kind": "docker", "pgdata": None}
        return
    base = ROOT / ".orchestrator" / f"test-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    pgdata = base / "pgdata"
    dsn = embedded_db.ensure_running(pgdata)
    try:
        yield {"dsn": dsn, "kind": "embedded", "pgdata": pgdata}
    finally:
        embedded_db.stop(pgdata)
        shutil.rmtree(base, ignore_errors=True)


async def _prepare_template(admin_dsn: str, name: str) -> None:
    from orchestrator.queue.install import install
    from orchestrator.store import install as install_store

    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await connect(with_database(admin_dsn, name))
    try:
        await install(conn)
        await install_store(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_db(pg_server: dict[str, object]) -> Iterator[str]:
    """Name of a database that already holds the queue layer and schema `orchestrator`."""
    admin_dsn = str(pg_server["dsn"])
    name = f"orch_tpl_{os.getpid()}"
    asyncio.run(_prepare_template(admin_dsn, name))
    yield name

    async def _drop() -> None:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(_drop())


@pytest.fixture
def admin_dsn(pg_server: dict[str, object]) -> str:
    return str(pg_server["dsn"])


@pytest.fixture
async def empty_dsn(admin_dsn: str) -> AsyncIterator[str]:
    """A fresh, empty database (no queue layer)."""
    async with temporary_database(admin_dsn) as dsn:
        yield dsn


@pytest.fixture
async def dsn(admin_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A fresh database cloned from the template (queue layer installed)."""
    async with temporary_database(admin_dsn, template_db) as dsn:
        yield dsn


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection (with the jsonb codec) to the test's fresh database."""
    c = await connect(dsn)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    from orchestrator.db import create_pool

    p = await create_pool(dsn, min_size=1, max_size=10)
    try:
        yield p
    finally:
        await p.close()
