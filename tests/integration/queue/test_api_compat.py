"""PGMQ 1.13's helpers and compatibility overloads, queue names with hyphens, PGMQ's texts."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.integration.queue.helpers import expect_error, ids, queue_state


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


async def test_format_table_name(conn: asyncpg.Connection) -> None:
    query = "SELECT pgmq.format_table_name(queue_name=>$1::text, prefix=>$2::text)"
    assert await conn.fetchval(query, "Order-Events", "q") == "q_order-events"
    assert await conn.fetchval(query, "jobs", "a") == "a_jobs"
    for bad in ("a$b", "a;b", "a--b", "it's"):
        await expect_error(
            conn,
            query,
            bad,
            "q",
            match=r"^queue name contains invalid characters: \$, ;, --, or \\'",
            sqlstate="22023",
        )


async def test_hyphenated_queue_names_work_everywhere(conn: asyncpg.Connection) -> None:
    name = "Order-Events"
    await conn.execute("SELECT pgmq.create(queue_name=>$1::text)", name)
    await conn.execute("SELECT pgmq.create_unlogged('fast-lane')")
    await conn.execute("SELECT pgmq.create_partitioned('part-q', '10', '100')")
    queues = [r["queue_name"] for r in await conn.fetch("SELECT * FROM pgmq.list_queues()")]
    assert queues == ["order-events", "fast-lane", "part-q"]
    for queue in ("order-events", "fast-lane", "part-q"):
        sent = await conn.fetchval(
            "SELECT * FROM pgmq.send(queue_name=>$1::text, msg=>'{\"a\": 1}'::jsonb)", queue
        )
        read = await conn.fetch(
            "SELECT * FROM pgmq.read(queue_name=>$1::text, vt=>$2::integer, qty=>$3::integer)",
            queue,
            0,
            1,
        )
        assert ids(read) == [sent]
        assert await conn.fetchval("SELECT pgmq.archive($1, $2::bigint)", queue, sent)
        metrics = await conn.fetchrow("SELECT * FROM pgmq.metrics($1)", queue)
        assert (metrics["queue_length"], metrics["total_messages"]) == (0, 1)
        await conn.execute("SELECT pgmq.enable_notify_insert($1, 0)", queue)
        assert await conn.fetchval("SELECT pgmq.purge_queue($1)", queue) == 0
    assert await conn.fetchval('SELECT count(*) FROM pgmq."a_order-events"') == 1
    maintained = await conn.fetch("SELECT * FROM pgmq_ext.run_maintenance('part-q')")
    assert {r["action"] for r in maintained} <= {"created", "dropped", "skipped"}
    assert await conn.fetchval("SELECT pgmq.drop_queue('order-events')")
    assert await conn.fetchval("SELECT to_regclass('pgmq.\"q_order-events\"')") is None


async def test_drop_queue_with_partitioned_flag_warns_then_drops(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute("SELECT pgmq.create('old_client')")
    warnings: list[str] = []

    def listen(_conn: object, message: asyncpg.PostgresLogMessage) -> None:
        warnings.append(message.message)

    conn.add_log_listener(listen)
    try:
        dropped = await conn.fetchval(
            "SELECT pgmq.drop_queue(queue_name=>$1::text, partitioned=>$2::boolean)",
            "old_client",
            False,
        )
        missing = await conn.fetchval("SELECT pgmq.drop_queue('old_client', false)")
        await asyncio.sleep(0.1)  # log messages reach listeners through the event loop
    finally:
        conn.remove_log_listener(listen)
    assert (dropped, missing) == (True, False)
    assert any(w.startswith("drop_queue(queue_name, partitioned) is deprecated") for w in warnings)


async def test_create_non_partitioned_and_acquire_queue_lock(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create_non_partitioned(queue_name=>'plain'::text)")
    await conn.execute("SELECT pgmq.create_non_partitioned('plain')")  # idempotent
    row = await conn.fetchrow("SELECT * FROM pgmq.list_queues()")
    assert (row["queue_name"], row["is_partitioned"], row["is_unlogged"]) == (
        "plain",
        False,
        False,
    )
    async with conn.transaction():
        await conn.execute("SELECT pgmq.acquire_queue_lock(queue_name=>'Plain'::text)")
        held = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        assert held == 1
        # The same lock the layer's DDL on that queue takes.
        same = await conn.fetchval(
            "SELECT count(*) FROM pg_locks l WHERE l.locktype = 'advisory' "
            "AND l.pid = pg_backend_pid() AND ((l.classid::bigint << 32) | l.objid::bigint) = "
            "hashtextextended('pgmq queue plain', 0)"
        )
        assert same == 1


async def test_create_partitioned_premake(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "SELECT pgmq.create_partitioned(queue_name=>'ahead'::text, partition_interval=>'10', "
        "retention_interval=>'100', premake=>$1::integer)",
        7,
    )
    assert (
        await conn.fetchval(
            "SELECT premake FROM pgmq_ext.partition_config WHERE queue_name = 'ahead'"
        )
        == 7
    )
    partitions = await conn.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'pgmq.q_ahead'::regclass"
    )
    assert partitions == 1 + 1 + 7  # default, current, premade
    before = await queue_state(conn)
    for premake in (0, -1, None):
        await expect_error(
            conn,
            "SELECT pgmq.create_partitioned('other', '10', '100', $1)",
            premake,
            match="^premake must be at least 1, got",
            sqlstate="22023",
        )
    assert await queue_state(conn) == before


async def test_convert_archive_partitioned(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create_partitioned('parted', '10', '100')")
    await conn.execute("SELECT pgmq.create('plain')")
    notices: list[str] = []

    def listen(_conn: object, message: asyncpg.PostgresLogMessage) -> None:
        notices.append(message.message)

    conn.add_log_listener(listen)
    try:
        await conn.execute("SELECT pgmq.convert_archive_partitioned(table_name=>'parted'::text)")
        await conn.execute("SELECT pgmq.convert_archive_partitioned('missing')")
        await asyncio.sleep(0.1)  # log messages reach listeners through the event loop
    finally:
        conn.remove_log_listener(listen)
    assert notices == ["Table a_parted is already partitioned", "Table a_missing does not exists"]
    before = await queue_state(conn)
    await expect_error(
        conn,
        "SELECT pgmq.convert_archive_partitioned('plain', '10', '100', 10)",
        match='^cannot partition the archive of queue "plain" alone',
        sqlstate="0A000",
    )
    assert await queue_state(conn) == before


async def test_notify_insert_throttles(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create('a-1'), pgmq.create('b'), pgmq.create('c')")
    await conn.execute("SELECT pgmq.enable_notify_insert('b', 500)")
    await conn.execute("SELECT pgmq.enable_notify_insert('a-1')")
    rows = await conn.fetch("SELECT * FROM pgmq.list_notify_insert_throttles()")
    assert [tuple(r.keys()) for r in rows[:1]] == [
        ("queue_name", "throttle_interval_ms", "last_notified_at")
    ]
    assert [(r["queue_name"], r["throttle_interval_ms"]) for r in rows] == [
        ("a-1", 250),
        ("b", 500),
    ]
    assert rows[0]["last_notified_at"].timestamp() == 0
    await conn.execute("SELECT pgmq.send('b', '{}'::jsonb)")
    notified = await conn.fetchval(
        "SELECT last_notified_at FROM pgmq.list_notify_insert_throttles() WHERE queue_name = 'b'"
    )
    assert notified > await conn.fetchval("SELECT now() - interval '1 minute'")

    await conn.execute(
        "SELECT pgmq.update_notify_insert(queue_name=>'b'::text, "
        "throttle_interval_ms=>$1::integer)",
        0,
    )
    rows = await conn.fetch("SELECT * FROM pgmq.list_notify_insert_throttles()")
    assert [(r["queue_name"], r["throttle_interval_ms"]) for r in rows] == [("a-1", 250), ("b", 0)]
    await expect_error(
        conn,
        "SELECT pgmq.update_notify_insert('c', 10)",
        match=r'^Queue "c" does not have notify_insert enabled\. Enable it first',
    )
    await expect_error(
        conn,
        "SELECT pgmq.update_notify_insert('nope', 10)",
        match=r'^Queue "nope" does not exist\. Create the queue first using pgmq\.create\(\)',
        sqlstate="42P01",
    )
    await expect_error(
        conn,
        "SELECT pgmq.update_notify_insert('b', -1)",
        match="^throttle_interval_ms must be non-negative, got: -1",
        sqlstate="22023",
    )
    await conn.execute("SELECT pgmq.disable_notify_insert('b')")
    names = [
        r["queue_name"]
        for r in await conn.fetch("SELECT * FROM pgmq.list_notify_insert_throttles()")
    ]
    assert names == ["a-1"]
