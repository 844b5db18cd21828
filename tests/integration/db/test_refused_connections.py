"""A server that refuses logins for now (too many clients) is waited out when asked to.

The refusal is real: a role whose CONNECTION LIMIT is reached gets PostgreSQL's 53300
("too many connections for role"), the SQLSTATE of ``too many clients already``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orchestrator.db import connect, create_pool
from orchestrator.errors import DatabaseUnavailable
from tests.support.pg import temporary_role, with_login

PASSWORD = "refused-pw"
connect_module = importlib.import_module("orchestrator.db.connect")


@pytest.fixture(autouse=True)
def _every_refusal_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The warning is rate-limited per process: each test sees its own."""
    monkeypatch.setattr(connect_module, "_last_refusal_logged", float("-inf"))


@pytest.fixture
async def limited_dsn(admin_dsn: str, dsn: str) -> AsyncIterator[str]:
    """`dsn` logging in as a role allowed one connection at a time."""
    async with temporary_role(admin_dsn, [dsn], prefix="limited", password=PASSWORD) as role:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f"ALTER ROLE {role} CONNECTION LIMIT 1")
        finally:
            await admin.close()
        yield with_login(dsn, role, PASSWORD)


async def test_without_patience_a_full_server_is_one_error(limited_dsn: str) -> None:
    holder = await connect(limited_dsn)
    try:
        with pytest.raises(DatabaseUnavailable, match="too many connections"):
            await connect(limited_dsn)
    finally:
        await holder.close()


async def test_a_patient_connect_gets_the_slot_once_it_is_free(
    limited_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    holder = await connect(limited_dsn)
    caplog.set_level(logging.WARNING, logger="orchestrator.db.connect")
    waiting = asyncio.create_task(connect(limited_dsn, patience=None))
    try:
        await _until(lambda: "refused a connection for now" in caplog.text)
        assert not waiting.done()
    finally:
        await holder.close()
    conn = await asyncio.wait_for(waiting, 120)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_a_patient_pool_waits_for_a_connection_instead_of_failing(
    limited_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    pool = await create_pool(limited_dsn, min_size=0, max_size=3, patience=None)
    try:
        holder = await connect(limited_dsn)
        caplog.set_level(logging.WARNING, logger="orchestrator.db.connect")
        try:
            waiting = asyncio.create_task(pool.fetchval("SELECT 2"))
            await _until(lambda: "refused a connection for now" in caplog.text)
            assert not waiting.done()
        finally:
            await holder.close()
        assert await asyncio.wait_for(waiting, 120) == 2
    finally:
        await pool.close()


async def _until(condition: object, limit: float = 60.0) -> None:
    """Poll `condition()` (a callable) until true; fail after `limit` seconds."""
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)
