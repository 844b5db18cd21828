"""Fixtures of the operations' tests: provisioned pipelines in the test's fresh database."""

from __future__ import annotations

import asyncpg
import pytest

from orchestrator.spec import Pipeline
from tests.integration.ops import support


@pytest.fixture
async def orders(conn: asyncpg.Connection) -> Pipeline:
    """fetch -> (label, sync) -> report (a join), archive kept one day, two schedules."""
    return await support.provision(conn, support.pipeline(support.ORDERS))


@pytest.fixture
async def ledger(conn: asyncpg.Connection) -> Pipeline:
    """One step, no archive, a dead-letter queue with its own name."""
    return await support.provision(conn, support.pipeline(support.LEDGER))
