"""The dynamic statements of read, archive and set_vt use indexes on a large queue."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


ROWS = 100_000


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


async def _plan(
    conn: asyncpg.Connection, name: str, types: str, statement: str, args: str
) -> list[dict[str, Any]]:
    """EXPLAIN (FORMAT JSON) of `statement` prepared with parameter `types`, run with `args`."""
    await conn.execute(f"PREPARE {name} ({types}) AS {statement}")
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE {name} ({args})")
    await conn.execute(f"DEALLOCATE {name}")
    document = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    return _nodes(document[0]["Plan"])


def _scans(nodes: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [
        (n["Node Type"], n.get("Index Name"))
        for n in nodes
        if n.get("Relation Name") in ("q_big", "a_big")
    ]


def _assert_indexed(nodes: list[dict[str, Any]], table: str) -> None:
    scans = [(t, i) for t, i in _scans(nodes)]
    assert scans, nodes
    on_table = [
        (n["Node Type"], n.get("Index Name"))
        for n in nodes
        if n.get("Relation Name") == table and n["Node Type"] not in ("ModifyTable",)
    ]
    assert on_table, nodes
    assert all(node_type != "Seq Scan" for node_type, _ in on_table), on_table
    assert all(
        node_type in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan")
        for node_type, _ in on_table
    ), on_table


@pytest.fixture
async def big(conn: asyncpg.Connection) -> str:
    await conn.execute("SELECT pgmq.create('big')")
    await conn.execute(
        "SELECT pgmq.send_batch('big', ARRAY(SELECT jsonb_build_object('i', i, 'kind', "
        "CASE WHEN i % 100 = 0 THEN 'rare' ELSE 'common' END) "
        "FROM generate_series(1, $1) i))",
        ROWS,
    )
    await conn.execute("ANALYZE pgmq.q_big")
    await conn.execute("ANALYZE pgmq.a_big")
    return "big"


READ_TYPES = "timestamptz, timestamptz, integer, jsonb"
READ_ARGS = "clock_timestamp(), clock_timestamp() + interval '30 seconds', {qty}, '{cond}'"


async def test_read_uses_an_index(conn: asyncpg.Connection, big: str) -> None:
    for qty in (1, 10, 100):
        # A condition most messages meet keeps the index; one almost none meet may make the
        # planner scan the table (it must look at nearly every row either way).
        for condition in ("{}", '{"kind": "common"}'):
            statement = await conn.fetchval(
                "SELECT pgmq_ext.read_sql($1, $2, $3::jsonb)", big, qty, condition
            )
            nodes = await _plan(
                conn, "r", READ_TYPES, statement, READ_ARGS.format(qty=qty, cond=condition)
            )
            _assert_indexed(nodes, "q_big")
            # The pick is locked row by row and limited: no full sort of the queue.
            types = [n["Node Type"] for n in nodes]
            assert "LockRows" in types and "Limit" in types, (qty, condition, types)


async def test_read_when_most_messages_are_in_flight(conn: asyncpg.Connection, big: str) -> None:
    await conn.execute(
        "UPDATE pgmq.q_big SET vt = now() + interval '1 hour' WHERE msg_id <= $1", ROWS - 50
    )
    await conn.execute("ANALYZE pgmq.q_big")
    statement = await conn.fetchval("SELECT pgmq_ext.read_sql($1, 10, '{}')", big)
    nodes = await _plan(conn, "r", READ_TYPES, statement, READ_ARGS.format(qty=10, cond="{}"))
    _assert_indexed(nodes, "q_big")
    # And it really finds the visible ones.
    rows = await conn.fetch("SELECT msg_id FROM pgmq.read($1, 30, 10)", big)
    assert [r["msg_id"] for r in rows] == list(range(ROWS - 49, ROWS - 39))


async def test_archive_and_set_vt_use_an_index(conn: asyncpg.Connection, big: str) -> None:
    for many, types, args in [
        (False, "bigint", "50000"),
        (True, "bigint[]", "ARRAY[1, 50000, 99999]::bigint[]"),
    ]:
        statement = await conn.fetchval("SELECT pgmq_ext.archive_sql($1, $2)", big, many)
        _assert_indexed(await _plan(conn, "a", types, statement, args), "q_big")
    for many, types, args in [
        (False, "bigint, timestamptz", "50000, now()"),
        (True, "bigint[], timestamptz", "ARRAY[1, 50000]::bigint[], now()"),
    ]:
        statement = await conn.fetchval("SELECT pgmq_ext.set_vt_sql($1, $2)", big, many)
        _assert_indexed(await _plan(conn, "s", types, statement, args), "q_big")
    # The statements are what archive() and set_vt() run: check they do the work.
    moved = await conn.fetch("SELECT * FROM pgmq.archive($1, ARRAY[1, 50000]::bigint[])", big)
    assert sorted(r[0] for r in moved) == [1, 50000]
    assert await conn.fetchval("SELECT count(*) FROM pgmq.a_big") == 2
    moved_vt = await conn.fetch("SELECT * FROM pgmq.set_vt($1, 2::bigint, 60)", big)
    assert [r["msg_id"] for r in moved_vt] == [2]
