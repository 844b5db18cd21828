"""Fixtures of the dashboard's tests: the application over the test's database, spoken to
through httpx's ASGI transport (same event loop, real PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from orchestrator.spec import Pipeline
from orchestrator.ui.security import Guard
from orchestrator.ui.web import create_app
from tests.integration.ops import support


@pytest.fixture
async def orders(conn: asyncpg.Connection) -> Pipeline:
    return await support.provision(conn, support.pipeline(support.ORDERS))


async def client_for(dsn: str, guard: Guard) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(dsn, guard=guard)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client
    await app.state.dashboard.close()


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[httpx.AsyncClient]:
    """The dashboard bound to loopback, no token: actions allowed."""
    async for c in client_for(dsn, Guard(loopback=True)):
        yield c


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)
