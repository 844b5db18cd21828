"""The API's shape (signatures, types, tables) and the queue-level functions."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.integration.queue.helpers import expect_error


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


# pgmq-api.md (its "Still to implement" part included), as PostgreSQL prints it:
# name(arguments with defaults) -> result.
EXPECTED_FUNCTIONS = sorted(
    [
        "archive(queue_name text, msg_id bigint) -> boolean",
        "archive(queue_name text, msg_ids bigint[]) -> SETOF bigint",
        "create(queue_name text) -> void",
        "create_partitioned(queue_name text, partition_interval text DEFAULT '10000'::text, "
        "retention_interval text DEFAULT '100000'::text, premake integer DEFAULT 4) -> void",
        "create_unlogged(queue_name text) -> void",
        "delete(queue_name text, msg_id bigint) -> boolean",
        "delete(queue_name text, msg_ids bigint[]) -> SETOF bigint",
        "detach_archive(queue_name text) -> void",
        "disable_notify_insert(queue_name text) -> void",
        "drop_queue(queue_name text) -> boolean",
        "enable_notify_insert(queue_name text, throttle_interval_ms integer DEFAULT 250) -> void",
        "list_queues() -> SETOF pgmq.queue_record",
        "metrics(queue_name text) -> pgmq.metrics_result",
        "metrics_all() -> SETOF pgmq.metrics_result",
        "pop(queue_name text, qty integer DEFAULT 1) -> SETOF pgmq.message_record",
        "purge_queue(queue_name text) -> bigint",
        "read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}'::jsonb)"
        " -> SETOF pgmq.message_record",
        "read_with_poll(queue_name text, vt integer, qty integer, max_poll_seconds integer "
        "DEFAULT 5, poll_interval_ms integer DEFAULT 100, conditional jsonb DEFAULT "
        "'{}'::jsonb) -> SETOF pgmq.message_record",
        "send(queue_name text, msg jsonb) -> SETOF bigint",
        "send(queue_name text, msg jsonb, delay integer) -> SETOF bigint",
        "send(queue_name text, msg jsonb, delay timestamp with time zone) -> SETOF bigint",
        "send(queue_name text, msg jsonb, headers jsonb) -> SETOF bigint",
        "send(queue_name text, msg jsonb, headers jsonb, delay integer) -> SETOF bigint",
        "send(queue_name text, msg jsonb, headers jsonb, delay timestamp with time zone)"
        " -> SETOF bigint",
        "send_batch(queue_name text, msgs jsonb[]) -> SETOF bigint",
        "send_batch(queue_name text, msgs jsonb[], delay integer) -> SETOF bigint",
        "send_batch(queue_name text, msgs jsonb[], delay timestamp with time zone) -> SETOF bigint",
        "send_batch(queue_name text, msgs jsonb[], headers jsonb[]) -> SETOF bigint",
        "send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer) -> SETOF bigint",
        "send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamp with "
        "time zone) -> SETOF bigint",
        "set_vt(queue_name text, msg_id bigint, vt integer) -> SETOF pgmq.message_record",
        "set_vt(queue_name text, msg_id bigint, vt timestamp with time zone)"
        " -> SETOF pgmq.message_record",
        "set_vt(queue_name text, msg_ids bigint[], vt integer) -> SETOF pgmq.message_record",
        "set_vt(queue_name text, msg_ids bigint[], vt timestamp with time zone)"
        " -> SETOF pgmq.message_record",
        "validate_queue_name(queue_name text) -> void",
        # PGMQ 1.9-1.13: FIFO groups, topics, helpers and compatibility overloads.
        "acquire_queue_lock(queue_name text) -> void",
        "bind_topic(pattern text, queue_name text) -> void",
        "convert_archive_partitioned(table_name text, "
        "partition_interval text DEFAULT '10000'::text, "
        "retention_interval text DEFAULT '100000'::text, "
        "leading_partition integer DEFAULT 10) -> void",
        "create_fifo_index(queue_name text) -> void",
        "create_fifo_indexes_all() -> void",
        "create_non_partitioned(queue_name text) -> void",
        "drop_queue(queue_name text, partitioned boolean) -> boolean",
        "format_table_name(queue_name text, prefix text) -> text",
        "list_notify_insert_throttles() -> TABLE(queue_name text, "
        "throttle_interval_ms integer, last_notified_at timestamp with time zone)",
        "list_topic_bindings() -> TABLE(pattern text, queue_name text, "
        "bound_at timestamp with time zone, compiled_regex text)",
        "list_topic_bindings(queue_name text) -> TABLE(pattern text, queue_name text, "
        "bound_at timestamp with time zone, compiled_regex text)",
        "read_grouped(queue_name text, vt integer, qty integer) -> SETOF pgmq.message_record",
        "read_grouped_head(queue_name text, vt integer, qty integer) -> SETOF pgmq.message_record",
        "read_grouped_head_with_poll(queue_name text, vt integer, qty integer, "
        "max_poll_seconds integer DEFAULT 5, "
        "poll_interval_ms integer DEFAULT 100) -> SETOF pgmq.message_record",
        "read_grouped_rr(queue_name text, vt integer, qty integer) -> SETOF pgmq.message_record",
        "read_grouped_rr_with_poll(queue_name text, vt integer, qty integer, "
        "max_poll_seconds integer DEFAULT 5, "
        "poll_interval_ms integer DEFAULT 100) -> SETOF pgmq.message_record",
        "read_grouped_with_poll(queue_name text, vt integer, qty integer, "
        "max_poll_seconds integer DEFAULT 5, "
        "poll_interval_ms integer DEFAULT 100) -> SETOF pgmq.message_record",
        "send_batch_topic(routing_key text, msgs jsonb[]) -> TABLE(queue_name text, msg_id bigint)",
        "send_batch_topic(routing_key text, msgs jsonb[], "
        "delay integer) -> TABLE(queue_name text, msg_id bigint)",
        "send_batch_topic(routing_key text, msgs jsonb[], "
        "delay timestamp with time zone) -> TABLE(queue_name text, msg_id bigint)",
        "send_batch_topic(routing_key text, msgs jsonb[], "
        "headers jsonb[]) -> TABLE(queue_name text, msg_id bigint)",
        "send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[], "
        "delay integer) -> TABLE(queue_name text, msg_id bigint)",
        "send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[], "
        "delay timestamp with time zone) -> TABLE(queue_name text, msg_id bigint)",
        "send_topic(routing_key text, msg jsonb) -> integer",
        "send_topic(routing_key text, msg jsonb, delay integer) -> integer",
        "send_topic(routing_key text, msg jsonb, headers jsonb, delay integer) -> integer",
        "test_routing(routing_key text) -> TABLE(pattern text, queue_name text, "
        "compiled_regex text)",
        "unbind_topic(pattern text, queue_name text) -> boolean",
        "update_notify_insert(queue_name text, throttle_interval_ms integer) -> void",
        "validate_routing_key(routing_key text) -> boolean",
        "validate_topic_pattern(pattern text) -> boolean",
    ]
)


async def test_schema_pgmq_has_exactly_the_api_functions(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        """
        SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ') -> '
               || pg_get_function_result(p.oid) AS signature
          FROM pg_proc p WHERE p.pronamespace = 'pgmq'::regnamespace ORDER BY 1
        """
    )
    assert [r["signature"] for r in rows] == EXPECTED_FUNCTIONS


async def test_types_have_the_api_columns_in_order(conn: asyncpg.Connection) -> None:
    query = """
        SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                         ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0
    """
    assert await conn.fetchval(query, "pgmq.message_record") == [
        "msg_id bigint",
        "read_ct integer",
        "enqueued_at timestamp with time zone",
        "last_read_at timestamp with time zone",
        "vt timestamp with time zone",
        "message jsonb",
        "headers jsonb",
    ]
    assert await conn.fetchval(query, "pgmq.queue_record") == [
        "queue_name character varying",
        "is_partitioned boolean",
        "is_unlogged boolean",
        "created_at timestamp with time zone",
    ]
    assert await conn.fetchval(query, "pgmq.metrics_result") == [
        "queue_name text",
        "queue_length bigint",
        "newest_msg_age_sec integer",
        "oldest_msg_age_sec integer",
        "total_messages bigint",
        "scrape_time timestamp with time zone",
        "queue_visible_length bigint",
        "default_partition_length bigint",
    ]
    assert await conn.fetchval(query, "pgmq.meta") == [
        "queue_name character varying",
        "is_partitioned boolean",
        "is_unlogged boolean",
        "created_at timestamp with time zone",
    ]


_COLUMNS = """
    SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
           a.attidentity::text, pg_get_expr(d.adbin, d.adrelid) AS default
      FROM pg_attribute a
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum
"""


async def test_create_makes_the_table_pair(conn: asyncpg.Connection) -> None:
    assert await conn.fetchval("SELECT pgmq.create('jobs')") is None
    q = [tuple(r) for r in await conn.fetch(_COLUMNS, "pgmq.q_jobs")]
    assert q == [
        ("msg_id", "bigint", True, "a", None),
        ("read_ct", "integer", True, "", "0"),
        ("enqueued_at", "timestamp with time zone", True, "", "now()"),
        ("last_read_at", "timestamp with time zone", False, "", None),
        ("vt", "timestamp with time zone", True, "", None),
        ("message", "jsonb", False, "", None),
        ("headers", "jsonb", False, "", None),
    ]
    a = [tuple(r) for r in await conn.fetch(_COLUMNS, "pgmq.a_jobs")]
    assert a == [
        ("msg_id", "bigint", True, "", None),
        *q[1:],
        ("archived_at", "timestamp with time zone", True, "", "now()"),
    ]
    indexes = await conn.fetch(
        "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'pgmq' "
        "AND tablename IN ('q_jobs', 'a_jobs') ORDER BY 1, 2"
    )
    defs = {(r["tablename"], r["indexdef"].split(" USING ")[1]) for r in indexes}
    assert defs == {
        ("a_jobs", "btree (archived_at)"),
        ("a_jobs", "btree (msg_id)"),
        ("q_jobs", "btree (msg_id)"),
        ("q_jobs", "btree (vt)"),
    }
    persistence = await conn.fetch(
        "SELECT relname, relpersistence::text FROM pg_class WHERE oid IN "
        "('pgmq.q_jobs'::regclass, 'pgmq.a_jobs'::regclass) ORDER BY 1"
    )
    assert [tuple(r) for r in persistence] == [("a_jobs", "p"), ("q_jobs", "p")]
    meta = await conn.fetchrow("SELECT * FROM pgmq.meta WHERE queue_name = 'jobs'")
    assert (meta["is_partitioned"], meta["is_unlogged"]) == (False, False)


async def test_create_is_idempotent_and_case_insensitive(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create('Jobs')")
    [msg_id] = await conn.fetch("SELECT * FROM pgmq.send('jobs', '{\"a\": 1}'::jsonb)")
    await conn.execute("SELECT pgmq.create('jobs')")
    await conn.execute("SELECT pgmq.create('JOBS')")
    await conn.execute("SELECT pgmq.create_unlogged('jobs')")
    await conn.execute("SELECT pgmq.create_partitioned('jobs')")
    rows = await conn.fetch("SELECT * FROM pgmq.list_queues()")
    assert [(r["queue_name"], r["is_partitioned"], r["is_unlogged"]) for r in rows] == [
        ("jobs", False, False)
    ]
    # The message survived: create never recreates an existing queue.
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_jobs") == 1
    assert msg_id[0] == 1


async def test_concurrent_creates_of_one_name_make_one_queue(dsn: str) -> None:
    from orchestrator.db import connect

    calls = ["create", "create", "create_unlogged", "create_partitioned", "create", "create"]
    conns = [await connect(dsn) for _ in calls]

    async def create(c: asyncpg.Connection, function: str) -> None:
        async with c.transaction():
            await c.execute(f"SELECT pgmq.{function}('shared')")
            await asyncio.sleep(0.05)  # hold the queue's lock a little: the others wait

    try:
        await asyncio.gather(*(create(c, f) for c, f in zip(conns, calls, strict=True)))
        rows = await conns[0].fetch("SELECT * FROM pgmq.list_queues()")
        assert [r["queue_name"] for r in rows] == ["shared"]
        tables = await conns[0].fetch(
            "SELECT relname FROM pg_class WHERE relnamespace = 'pgmq'::regnamespace "
            "AND relname LIKE '%shared' ORDER BY 1"
        )
        assert [r["relname"] for r in tables] == ["a_shared", "q_shared"]
        assert await conns[0].fetchval("SELECT * FROM pgmq.send('shared', '{}'::jsonb)") == 1
    finally:
        for c in conns:
            await c.close()


async def test_create_unlogged(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create_unlogged(queue_name => 'fast')")
    persistence = await conn.fetch(
        "SELECT relname, relpersistence::text FROM pg_class WHERE oid IN "
        "('pgmq.q_fast'::regclass, 'pgmq.a_fast'::regclass) ORDER BY 1"
    )
    assert [tuple(r) for r in persistence] == [("a_fast", "p"), ("q_fast", "u")]
    meta = await conn.fetchrow("SELECT * FROM pgmq.list_queues()")
    assert (meta["queue_name"], meta["is_partitioned"], meta["is_unlogged"]) == (
        "fast",
        False,
        True,
    )
    [sent] = await conn.fetch("SELECT * FROM pgmq.send('fast', '{\"x\": 1}'::jsonb)")
    [read] = await conn.fetch("SELECT * FROM pgmq.read('fast', 30, 1)")
    assert (read["msg_id"], read["message"]) == (sent[0], {"x": 1})
    assert await conn.fetchval("SELECT pgmq.archive('fast', $1::bigint)", sent[0]) is True
    assert await conn.fetchval("SELECT count(*) FROM pgmq.a_fast") == 1


async def test_create_partitioned_named_arguments(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "SELECT pgmq.create_partitioned(queue_name => 'by_id', partition_interval => '100', "
        "retention_interval => '1000')"
    )
    await conn.execute(
        "SELECT pgmq.create_partitioned(queue_name => 'by_time', partition_interval => "
        "'1 day', retention_interval => '7 days')"
    )
    await conn.execute("SELECT pgmq.create_partitioned('by_default')")
    rows = await conn.fetch(
        "SELECT queue_name, partition_by, id_interval, id_retention, time_interval, "
        "time_retention FROM pgmq_ext.partition_config ORDER BY 1"
    )
    got = [tuple(r) for r in rows]
    assert [g[:4] for g in got] == [
        ("by_default", "msg_id", 10000, 100000),
        ("by_id", "msg_id", 100, 1000),
        ("by_time", "time", None, None),
    ]
    assert str(got[2][4]) == "1 day, 0:00:00" and str(got[2][5]) == "7 days, 0:00:00"
    queues = await conn.fetch("SELECT * FROM pgmq.list_queues() ORDER BY queue_name")
    assert [(r["queue_name"], r["is_partitioned"], r["is_unlogged"]) for r in queues] == [
        ("by_default", True, False),
        ("by_id", True, False),
        ("by_time", True, False),
    ]
    keys = await conn.fetch(
        "SELECT c.relname, pg_get_partkeydef(c.oid) AS key FROM pg_class c "
        "WHERE c.relnamespace = 'pgmq'::regnamespace AND c.relkind = 'p' ORDER BY 1"
    )
    assert [tuple(r) for r in keys] == [
        ("a_by_default", "RANGE (msg_id)"),
        ("a_by_id", "RANGE (msg_id)"),
        ("a_by_time", "RANGE (archived_at)"),
        ("q_by_default", "RANGE (msg_id)"),
        ("q_by_id", "RANGE (msg_id)"),
        ("q_by_time", "RANGE (enqueued_at)"),
    ]


async def test_drop_queue(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create('gone')")
    await conn.execute("SELECT pgmq.enable_notify_insert('gone')")
    await conn.execute("SELECT pgmq.create_partitioned('gone_p', '10', '100')")
    await conn.execute("SELECT pgmq.send('gone', '{}'::jsonb)")
    assert await conn.fetchval("SELECT pgmq.drop_queue(queue_name => 'gone')") is True
    assert await conn.fetchval("SELECT pgmq.drop_queue('GONE_P')") is True
    assert await conn.fetchval("SELECT count(*) FROM pgmq.meta") == 0
    assert await conn.fetchval("SELECT count(*) FROM pgmq_ext.partition_config") == 0
    leftovers = await conn.fetch(
        "SELECT relname FROM pg_class WHERE relnamespace IN "
        "('pgmq'::regnamespace, 'pgmq_ext'::regnamespace) AND relname LIKE '%gone%'"
    )
    assert leftovers == []
    # The name can be used again, from scratch.
    await conn.execute("SELECT pgmq.create('gone')")
    assert await conn.fetchval("SELECT * FROM pgmq.send('gone', '{}'::jsonb)") == 1


async def test_drop_unknown_queue_is_false_with_a_notice(conn: asyncpg.Connection) -> None:
    notices: list[str] = []
    conn.add_log_listener(lambda _c, message: notices.append(message.message))
    assert await conn.fetchval("SELECT pgmq.drop_queue('nothing')") is False
    assert notices == ['queue "nothing" does not exist']


async def test_purge_queue_counts_and_keeps_the_archive(
    conn: asyncpg.Connection, queue: str
) -> None:
    await conn.execute("SELECT pgmq.send_batch($1, ARRAY['{}', '{}', '{}', '{}']::jsonb[])", queue)
    await conn.execute("SELECT pgmq.archive($1, 1::bigint)", queue)
    await conn.execute("SELECT pgmq.read($1, 30, 1)", queue)  # an invisible one goes too
    assert await conn.fetchval("SELECT pgmq.purge_queue(queue_name => $1::text)", queue) == 3
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_q") == 0
    assert await conn.fetchval("SELECT count(*) FROM pgmq.a_q") == 1
    assert await conn.fetchval("SELECT pgmq.purge_queue($1)", queue) == 0
    # Sending goes on with the next msg_id.
    assert await conn.fetchval("SELECT * FROM pgmq.send($1, '{}'::jsonb)", queue) == 5


async def test_list_queues(conn: asyncpg.Connection) -> None:
    assert await conn.fetch("SELECT * FROM pgmq.list_queues()") == []
    await conn.execute("SELECT pgmq.create('b')")
    await conn.execute("SELECT pgmq.create_unlogged('a')")
    await conn.execute("SELECT pgmq.create_partitioned('c', '5', '50')")
    rows = await conn.fetch("SELECT * FROM pgmq.list_queues()")
    assert list(rows[0].keys()) == ["queue_name", "is_partitioned", "is_unlogged", "created_at"]
    assert sorted((r["queue_name"], r["is_partitioned"], r["is_unlogged"]) for r in rows) == [
        ("a", False, True),
        ("b", False, False),
        ("c", True, False),
    ]
    assert all(r["created_at"] is not None for r in rows)


async def test_detach_archive_changes_nothing(conn: asyncpg.Connection, queue: str) -> None:
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    await conn.execute("SELECT pgmq.archive($1, 1::bigint)", queue)
    assert await conn.fetchval("SELECT pgmq.detach_archive(queue_name => $1::text)", queue) is None
    assert await conn.fetchval("SELECT count(*) FROM pgmq.a_q") == 1
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    assert await conn.fetchval("SELECT pgmq.archive($1, 2::bigint)", queue) is True


async def test_validate_queue_name(conn: asyncpg.Connection) -> None:
    for good in ["a", "A_b_9", "x" * 47, "_"]:
        assert (
            await conn.fetchval("SELECT pgmq.validate_queue_name(queue_name => $1)", good) is None
        )
    await expect_error(
        conn,
        "SELECT pgmq.validate_queue_name($1)",
        "x" * 48,
        match="^queue name is too long, maximum length is 47 characters: .* has 48",
        sqlstate="22023",
    )
    assert await conn.fetchval("SELECT pgmq.validate_queue_name($1)", "order-events") is None
    await expect_error(
        conn,
        "SELECT pgmq.validate_queue_name($1)",
        "a.b",
        match="invalid queue name 'a.b'",
        sqlstate="22023",
    )
    await expect_error(
        conn,
        "SELECT pgmq.validate_queue_name($1)",
        "a--b",
        match=r"^queue name contains invalid characters: \$, ;, --, or \\'",
        sqlstate="22023",
    )
