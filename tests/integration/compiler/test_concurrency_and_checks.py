"""Concurrent applies, the applied-version check `run` makes, and SQL literals."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from orchestrator.compiler import applied_hashes, apply, check_applied, plan
from orchestrator.compiler.render import quote_jsonb, quote_literal
from orchestrator.db import connect
from orchestrator.errors import SchemaMissing
from tests.integration.compiler.conftest import ORDERS, ORDERS_QUEUES, Write


async def test_concurrent_applies_serialise_and_agree(empty_dsn: str, write: Write) -> None:
    pipelines = write(orders=ORDERS)
    conns = [await connect(empty_dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(apply(c, pipelines) for c in conns))
        assert sorted(r.changed for r in results) == [False, False, True]
        (winner,) = [r for r in results if r.changed]
        assert len(winner.plan.changes) == 9
        assert all(r.lines() == ["No changes."] for r in results if not r.changed)
        conn = conns[0]
        names = {r[0] for r in await conn.fetch("SELECT queue_name FROM pgmq.meta")}
        assert names == ORDERS_QUEUES
        assert await conn.fetchval("SELECT count(*) FROM orchestrator.pipelines") == 1
        assert await conn.fetchval("SELECT count(*) FROM pgmq_ext.schema_version") == 1
        assert (await plan(conn, pipelines)).empty
    finally:
        for c in conns:
            await c.close()


async def test_check_applied_on_an_empty_database(empty_dsn: str, write: Write) -> None:
    conn = await connect(empty_dsn)
    try:
        with pytest.raises(SchemaMissing, match=r"queue layer is not installed.*run orchestrator"):
            await check_applied(conn, write(orders=ORDERS))
        assert await applied_hashes(conn) == {}
    finally:
        await conn.close()


async def test_check_applied_compares_spec_hashes(conn: asyncpg.Connection, write: Write) -> None:
    (orders,) = write(orders=ORDERS)
    with pytest.raises(SchemaMissing, match=r"^pipeline orders is not applied; run orchestrator"):
        await check_applied(conn, [orders])
    await apply(conn, [orders])
    await check_applied(conn, [orders])
    assert await applied_hashes(conn) == {"orders": orders.spec_hash()}
    changed = write(orders=ORDERS.replace("throttle: 250ms", "throttle: 1s"))
    with pytest.raises(SchemaMissing, match="pipeline orders changed since it was applied"):
        await check_applied(conn, changed)


async def test_check_applied_without_schema_orchestrator(
    conn: asyncpg.Connection, write: Write
) -> None:
    await conn.execute("DROP SCHEMA orchestrator CASCADE")
    with pytest.raises(SchemaMissing, match="schema orchestrator is missing"):
        await check_applied(conn, write(orders=ORDERS))


NASTY = [
    "plain",
    "it's",
    "''; DROP TABLE pgmq.meta; --",
    "back\\slash \\' and \\\\",
    "$$dollar$$ $tag$",
    "ünïcödé \u2018quotes\u2019 \uff07fullwidth\uff07 \U0001f642",
    "line\nbreak\ttab\r",
    "E'x'",
]


@pytest.mark.parametrize("conforming", ["on", "off"])
async def test_literals_read_back_unchanged(conn: asyncpg.Connection, conforming: str) -> None:
    await conn.execute(f"SET standard_conforming_strings = {conforming}")
    await conn.execute("SET escape_string_warning = off")
    for text in NASTY:
        assert await conn.fetchval(f"SELECT {quote_literal(text)}::text") == text
    document = {"description": NASTY, "n": 1.5, "none": None}
    assert await conn.fetchval(f"SELECT {quote_jsonb(document)}") == document
