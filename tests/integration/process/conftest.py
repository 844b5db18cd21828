"""Fixtures for process-level tests: a project folder and a database where it is applied."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.db import connect
from tests.integration.process.support import CHAIN, SLOW, Project, make_project, provision


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """Pipelines `chain` (3 steps, 2s visibility) and `slow` (1 step, 60s visibility)."""
    return make_project(tmp_path, {"chain": CHAIN, "slow": SLOW})


@pytest.fixture
async def applied(dsn: str, project: Project) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test database, where the project's pipelines are applied."""
    conn = await connect(dsn)
    try:
        await provision(conn, project.pipelines())
        yield conn
    finally:
        await conn.close()
