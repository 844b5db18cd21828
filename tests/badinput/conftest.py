"""Fixtures of the bad-input catalogue: a project folder, and databases with it applied or not."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.db import connect
from tests.badinput.support import write_project
from tests.support.pg import with_database


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder (cwd of the CLI) with pipeline `orders` and its handlers."""
    return write_project(tmp_path / "project")


@pytest.fixture
async def applied(dsn: str, project: Path) -> AsyncIterator[str]:
    """The DSN of a database where the project's pipelines are applied."""
    from orchestrator.compiler import apply
    from orchestrator.spec import load_pipelines_or_raise

    conn = await connect(dsn)
    try:
        await apply(conn, load_pipelines_or_raise(project / "pipelines"))
    finally:
        await conn.close()
    yield dsn


@pytest.fixture(scope="module")
def shared(
    pg_server: dict[str, object], template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """(DSN, project folder) of one database per test module where the project is applied,
    for tests that only read it or check that nothing was written."""
    from orchestrator.compiler import apply
    from orchestrator.spec import load_pipelines_or_raise

    admin_dsn = str(pg_server["dsn"])
    name = f"bad_{uuid.uuid4().hex[:16]}"
    root = write_project(tmp_path_factory.mktemp("shared") / "project")
    dsn = with_database(admin_dsn, name)

    async def create() -> None:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        finally:
            await admin.close()
        conn = await connect(dsn)
        try:
            await apply(conn, load_pipelines_or_raise(root / "pipelines"))
        finally:
            await conn.close()

    async def drop() -> None:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(create())
    try:
        yield dsn, root
    finally:
        asyncio.run(drop())
