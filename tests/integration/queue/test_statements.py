"""pgmq_ext.statements(): a queue's statements for clients that prepare them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from tests.integration.queue.helpers import expect_error, ids, queue_state


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


NAMES = [
    "archive",
    "archive_many",
    "delete",
    "delete_many",
    "pop",
    "pop_many",
    "read",
    "read_conditional",
    "read_many",
    "read_many_conditional",
    "send",
    "send_at",
    "send_batch",
    "send_batch_at",
    "set_vt",
    "set_vt_at",
    "set_vt_many",
    "set_vt_many_at",
]


async def _statements(conn: asyncpg.Connection, queue: str) -> dict[str, str]:
    rows = await conn.fetch("SELECT name, sql FROM pgmq_ext.statements($1)", queue)
    return {row["name"]: row["sql"] for row in rows}


async def test_one_statement_per_operation(conn: asyncpg.Connection, queue: str) -> None:
    statements = await _statements(conn, queue)
    assert sorted(statements) == NAMES
    for name, sql in statements.items():
        # Only this queue's tables, named as the functions name them; no value in the text.
        tables = {"pgmq.q_q", "pgmq.a_q"} if name.startswith("archive") else {"pgmq.q_q"}
        assert {w for w in sql.replace("(", " ").split() if w.startswith("pgmq.")} == tables
        assert "clock_timestamp" not in sql and "now()" not in sql, name
    # The same builders as the functions: only the inputs differ.
    assert statements["delete"] == await conn.fetchval("SELECT pgmq_ext.delete_sql('q', false)")
    assert statements["archive_many"] == await conn.fetchval(
        "SELECT pgmq_ext.archive_sql('q', true)"
    )
    assert (await conn.fetchval("SELECT pgmq_ext.send_sql('q')")).replace(
        "($1, $2, $3)", "(statement_timestamp() + make_interval(secs => $1::float8), $2, $3)"
    ) == statements["send"]


async def test_names_are_case_insensitive(conn: asyncpg.Connection, queue: str) -> None:
    assert await _statements(conn, "Q") == await _statements(conn, queue)


UNKNOWN = ["nope", "x" * 60, "a; drop table x", 'q"; DROP TABLE pgmq.meta; --']


@pytest.mark.parametrize("name", UNKNOWN)
async def test_unknown_queue(conn: asyncpg.Connection, queue: str, name: str) -> None:
    before = await queue_state(conn)
    error = await expect_error(
        conn,
        "SELECT * FROM pgmq_ext.statements($1)",
        name,
        match=f'^queue "{name}" does not exist$',
        sqlstate="42P01",
    )
    assert "pgmq.create()" in (error.hint or "")
    await expect_error(
        conn,
        "SELECT * FROM pgmq_ext.statements($1)",
        None,
        match="^queue name must not be null$",
        sqlstate="22023",
    )
    assert await queue_state(conn) == before


async def _run(conn: asyncpg.Connection, sql: str, *args: Any) -> list[asyncpg.Record]:
    return await conn.fetch(sql, *args)


@pytest.mark.parametrize("partitioned", [False, True])
async def test_each_statement_with_its_parameters(
    conn: asyncpg.Connection, partitioned: bool
) -> None:
    if partitioned:
        await conn.execute("SELECT pgmq.create_partitioned('q', '3', '100')")
    else:
        await conn.execute("SELECT pgmq.create('q')")
    s = await _statements(conn, "q")
    later = datetime.now(UTC) + timedelta(hours=1)
    # send: $1 delay seconds, $2 message, $3 headers; send_at: $1 timestamp.
    first = (await _run(conn, s["send"], 0.0, {"k": "a"}, {"h": 1}))[0][0]
    delayed = (await _run(conn, s["send"], 3600.0, {"k": "b"}, None))[0][0]
    at = (await _run(conn, s["send_at"], later, {"k": "c"}, None))[0][0]
    # send_batch: JSON texts; a JSON array stays one message.
    batch = ids(await _run(conn, s["send_batch"], 0.0, ['{"k": "a"}', "[1, 2]", "3"], None))
    batch_at = ids(await _run(conn, s["send_batch_at"], later, ['{"k": "d"}'], ['{"h": 2}']))
    assert [first, delayed, at] == [1, 2, 3] and batch == [4, 5, 6] and batch_at == [7]
    stored = await conn.fetch("SELECT msg_id, vt - enqueued_at AS delay FROM pgmq.q_q")
    delays = {r["msg_id"]: r["delay"] for r in stored}
    assert timedelta(minutes=59) < delays[delayed] < timedelta(minutes=61)
    assert await conn.fetchval("SELECT vt FROM pgmq.q_q WHERE msg_id = 3") == later
    # read: $1 vt seconds (one message); read_many: $2 qty; conditional: the jsonb last.
    [one] = await _run(conn, s["read_conditional"], 30, {"k": "a"})
    assert (one["msg_id"], one["read_ct"], one["headers"]) == (1, 1, {"h": 1})
    assert one["vt"] - one["last_read_at"] == timedelta(seconds=30)
    assert ids(await _run(conn, s["read_many_conditional"], 30, 10, {"k": "a"})) == [4]
    assert ids(await _run(conn, s["read"], 0)) == [5]
    rows = sorted(await _run(conn, s["read_many"], 0, 10), key=lambda r: r["msg_id"])
    assert [r["message"] for r in rows] == [[1, 2], 3]
    # pop: one, or $1 qty.
    assert ids(await _run(conn, s["pop"])) == [5]
    assert ids(await _run(conn, s["pop_many"], 10)) == [6]
    # set_vt: $1 id(s), $2 seconds from now or a timestamp.
    assert ids(await _run(conn, s["set_vt"], 2, 0.0)) == [2]
    assert sorted(ids(await _run(conn, s["set_vt_many"], [1, 3, 99], 0.0))) == [1, 3]
    assert ids(await _run(conn, s["set_vt_at"], 7, later)) == [7]
    assert sorted(ids(await _run(conn, s["set_vt_many_at"], [1, 2], later))) == [1, 2]
    # delete: the command tag counts; delete_many and archive(_many) return the ids.
    assert await conn.execute(s["delete"], 1) == "DELETE 1"
    assert await conn.execute(s["delete"], 1) == "DELETE 0"
    assert ids(await _run(conn, s["delete_many"], [2, 99])) == [2]
    assert await conn.fetchval(s["archive"], 3) == 3
    assert await conn.fetchval(s["archive"], 3) is None
    assert sorted(ids(await _run(conn, s["archive_many"], [4, 7, 99]))) == [4, 7]
    assert await conn.fetchval("SELECT count(*) FROM pgmq.a_q") == 3
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_q") == 0


async def test_a_queue_partitioned_by_msg_id_reads_and_pops_through_its_functions(
    conn: asyncpg.Connection,
) -> None:
    """Its own functions bound each statement to the head's partition; a statement over the
    whole table would open every partition on each call. Its acks stay statements."""
    await conn.execute("SELECT pgmq.create_partitioned('parts', '10', '100')")
    s = await _statements(conn, "parts")
    calls = {
        "read": 'pgmq_ext."read:parts"($1::integer, 1, NULL)',
        "read_many": 'pgmq_ext."read_many:parts"($1::integer, $2::integer, NULL)',
        "read_conditional": 'pgmq_ext."read:parts"($1::integer, 1, $2::jsonb)',
        "read_many_conditional": 'pgmq_ext."read_many:parts"($1::integer, $2::integer, $3::jsonb)',
        "pop": 'pgmq_ext."pop:parts"(1)',
        "pop_many": 'pgmq_ext."pop_many:parts"($1::integer)',
    }
    for name, call in calls.items():
        assert s[name].endswith(f"FROM {call}"), name
    assert s["delete_many"] == await conn.fetchval("SELECT pgmq_ext.delete_sql('parts', true)")
    # Across partitions, oldest first, as the statements over the table read them.
    await conn.execute(
        "SELECT pgmq.send_batch('parts', ARRAY(SELECT to_jsonb(i) FROM generate_series(1, 25) i))"
    )
    assert ids(await _run(conn, s["read"], 0)) == [1]
    assert ids(await _run(conn, s["read_many"], 30, 12)) == list(range(1, 13))
    assert ids(await _run(conn, s["read_conditional"], 30, 13)) == [13]
    assert ids(await _run(conn, s["pop"])) == [14]
    assert ids(await _run(conn, s["pop_many"], 20)) == list(range(15, 26))
    # A plain queue's reads stay the statements over its table.
    await conn.execute("SELECT pgmq.create('plain_q')")
    plain = await _statements(conn, "plain_q")
    assert plain["read"].startswith("UPDATE pgmq.q_plain_q")


async def test_the_one_message_reads_keep_one_plan(conn: asyncpg.Connection, queue: str) -> None:
    """LIMIT 1 is written out, so PostgreSQL settles on a generic plan instead of planning
    each execution; the reads of many take their limit as a parameter."""
    s = await _statements(conn, queue)
    await _run(
        conn, s["send_batch"], 0.0, [orjson.dumps({"i": i}).decode() for i in range(40)], None
    )
    for _ in range(10):
        await _run(conn, s["read"], 0)
        await _run(conn, s["pop"])
    plans = {
        r["statement"]: r["generic_plans"]
        for r in await conn.fetch("SELECT statement, generic_plans FROM pg_prepared_statements")
    }
    assert plans[s["read"]] > 0
    assert plans[s["pop"]] > 0


async def test_statements_of_a_big_queue_use_an_index(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create('big')")
    await conn.execute(
        "SELECT pgmq.send_batch('big', ARRAY(SELECT jsonb_build_object('i', i, 'kind', "
        "CASE WHEN i % 100 = 0 THEN 'rare' ELSE 'common' END) FROM generate_series(1, 100000) i))"
    )
    await conn.execute("ANALYZE pgmq.q_big")
    s = await _statements(conn, "big")
    for name, types, args in [
        ("read", "integer", "30"),
        ("read_many", "integer, integer", "30, 10"),
        ("read_many_conditional", "integer, integer, jsonb", '30, 10, \'{"kind": "common"}\''),
        ("pop_many", "integer", "10"),
        ("archive", "bigint", "50000"),
        ("set_vt_many", "bigint[], float8", "ARRAY[1, 50000]::bigint[], 5"),
    ]:
        await conn.execute(f"PREPARE p ({types}) AS {s[name]}")
        raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE p ({args})")
        await conn.execute("DEALLOCATE p")
        nodes = _nodes(orjson.loads(raw)[0]["Plan"] if isinstance(raw, str) else raw[0]["Plan"])
        scans = [n["Node Type"] for n in nodes if n.get("Relation Name") == "q_big"]
        assert scans and "Seq Scan" not in scans, (name, scans)


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found
