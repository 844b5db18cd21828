"""Fixtures of the queue layer's tests.

Most modules here share one database per module instead of one per test (creating a database
costs more than most tests): such a module overrides `dsn` with `shared_queue_db`, so `conn`,
`other_conn` and `pool` point at the shared database, and every test starts without queues.
Modules whose tests change more than queues (install, catalog objects) keep the per-test
database of tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import pytest

from orchestrator.db import connect
from tests.support.pg import with_database

QUEUE = "q"


@pytest.fixture
async def queue(conn: asyncpg.Connection) -> str:
    """Name of an empty, plain queue."""
    await conn.execute("SELECT pgmq.create($1)", QUEUE)
    return QUEUE


@pytest.fixture
async def other_conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A second connection to the test's database (another session)."""
    c = await connect(dsn)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def new_database(admin_dsn: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """A factory of fresh, empty databases (no queue layer), dropped after the test."""
    names: list[str] = []

    async def make() -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        names.append(name)
        return with_database(admin_dsn, name)

    yield make
    admin = await asyncpg.connect(admin_dsn)
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _admin(admin_dsn: str, statement: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def shared_dsn(pg_server: dict[str, object], template_db: str) -> Iterator[str]:
    """One database with the queue layer for a whole module."""
    admin_dsn = str(pg_server["dsn"])
    name = f"m_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin(admin_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    yield with_database(admin_dsn, name)
    asyncio.run(_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def shared_queue_db(shared_dsn: str) -> str:
    """The module's shared database, emptied of queues (and their tables) for this test."""
    c = await connect(shared_dsn)
    try:
        await c.execute("SELECT pgmq.drop_queue(m.queue_name) FROM pgmq.meta m")
        leftovers = await c.fetchval(
            "SELECT count(*) FROM pg_class c WHERE c.relnamespace IN "
            "('pgmq'::regnamespace, 'pgmq_ext'::regnamespace) "
            "AND c.relkind IN ('r', 'p', 'v', 'S') "
            "AND c.relname NOT IN ('meta', 'schema_version', 'partition_config', 'topic_bindings')"
        )
        assert leftovers == 0, "a previous test left objects in the shared database"
    finally:
        await c.close()
    return shared_dsn
