"""`install --adopt`: a database where PGMQ 1.13 was installed from its SQL files, holding
messages in plain, unlogged and archived queues (one in flight with a future vt), topic
bindings and insert notifications, is taken over in place without losing a row."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from orchestrator.db import connect
from orchestrator.errors import ConfigError
from orchestrator.queue.adopt import AdoptionRefused
from orchestrator.queue.install import install
from tests.integration.queue.helpers import pgmq_sql, queue_state

QUEUE_TABLES = (
    '"q_jobs"',
    '"a_jobs"',
    '"q_fast"',
    '"a_fast"',
    '"q_order-events"',
    '"a_order-events"',
)


@pytest.fixture
async def pgmq_db(new_database: Callable[[], Awaitable[str]]) -> AsyncIterator[asyncpg.Connection]:
    """A database with PGMQ 1.13 (its own SQL) and queues holding messages."""
    conn = await connect(await new_database())
    await conn.execute(pgmq_sql())
    await conn.execute("SELECT pgmq.create('jobs')")
    await conn.execute("SELECT pgmq.create_unlogged('fast')")
    await conn.execute("SELECT pgmq.create('Order-Events')")
    for queue in ("jobs", "fast", "order-events"):
        await conn.execute(
            "SELECT pgmq.send_batch($1, $2::jsonb[], $3::jsonb[])",
            queue,
            [{"n": i, "q": queue} for i in range(5)],
            [{"x-pgmq-group": f"g{i % 2}", "trace": i} for i in range(5)],
        )
    await conn.execute("SELECT * FROM pgmq.send('jobs', '{\"later\": 1}'::jsonb, 3600)")
    await conn.execute("SELECT * FROM pgmq.read('jobs', 600, 2)")  # in flight, future vt
    await conn.execute("SELECT pgmq.archive('jobs', ARRAY[3, 4]::bigint[])")
    await conn.execute("SELECT pgmq.archive('order-events', 1::bigint)")
    await conn.execute("SELECT pgmq.enable_notify_insert('jobs', 300)")
    await conn.execute("SELECT pgmq.bind_topic('orders.#', 'Order-Events')")
    await conn.execute("SELECT pgmq.bind_topic('jobs.*', 'jobs')")
    yield conn
    await conn.close()


async def _rows(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every message of every queue table, in msg_id order, columns by name."""
    rows = {}
    for table in QUEUE_TABLES:
        columns = "msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers"
        if table.startswith('"a_'):
            columns += ", archived_at"
        found = await conn.fetch(f"SELECT {columns} FROM pgmq.{table} ORDER BY msg_id")
        rows[table] = [tuple(r) for r in found]
    return rows


async def test_adopt_keeps_every_message_and_replaces_the_functions(
    pgmq_db: asyncpg.Connection,
) -> None:
    conn = pgmq_db
    before = await _rows(conn)
    assert sum(len(v) for v in before.values()) == 16
    created = await conn.fetch("SELECT lower(queue_name), created_at FROM pgmq.meta ORDER BY 1")

    result = await install(conn, adopt=True)

    assert result.action == "adopted"
    report = result.message()
    assert "keep queue jobs (plain): 4 messages, 2 archived" in report
    assert "keep queue fast (unlogged): 5 messages, 0 archived" in report
    assert "keep queue order-events (plain): 4 messages, 1 archived" in report
    assert "keep topic binding orders.# -> order-events" in report
    assert "keep insert notifications of jobs (300 ms)" in report
    assert await _rows(conn) == before
    meta = await conn.fetch("SELECT queue_name, created_at FROM pgmq.meta ORDER BY 1")
    assert [tuple(r) for r in meta] == [tuple(r) for r in created]
    assert await conn.fetchval("SELECT to_regnamespace('pgmq_adopted')") is None
    # The layer's functions now: its statements, its FIFO reads, its throttles and bindings.
    assert await conn.fetchval("SELECT count(*) FROM pgmq_ext.statements('jobs')") > 10
    # Every adopted queue has its own functions (the SQL callers' fast path).
    own = await conn.fetch(
        "SELECT DISTINCT split_part(proname, ':', 2) AS q FROM pg_proc"
        " WHERE pronamespace = 'pgmq_ext'::regnamespace AND proname LIKE 'read:%' ORDER BY 1"
    )
    assert [r["q"] for r in own] == [r[0] for r in created]
    throttles = await conn.fetch("SELECT * FROM pgmq.list_notify_insert_throttles()")
    assert [(r["queue_name"], r["throttle_interval_ms"]) for r in throttles] == [("jobs", 300)]
    routes = await conn.fetch("SELECT queue_name FROM pgmq.test_routing('orders.created')")
    assert [r["queue_name"] for r in routes] == ["order-events"]
    # Clients go on as before, with PGMQ's named-argument calls; ids continue.
    read = "SELECT * FROM pgmq.read(queue_name=>$1::text, vt=>$2::integer, qty=>$3::integer)"
    got = await conn.fetch(read, "jobs", 30, 10)
    assert [r["msg_id"] for r in got] == [5]  # 1, 2 in flight; 3, 4 archived; 6 delayed
    assert got[0]["headers"] == {"x-pgmq-group": "g0", "trace": 4}
    new_id = await conn.fetchval(
        "SELECT * FROM pgmq.send(queue_name=>'jobs'::text, msg=>'{}'::jsonb)"
    )
    assert new_id == 7
    fast = await conn.fetch("SELECT * FROM pgmq.read_grouped_head('fast', 30, 10)")
    assert [r["msg_id"] for r in fast] == [1, 2]
    assert await conn.fetchval("SELECT pgmq.send_topic('orders.created', '{}'::jsonb)") == 1
    # Installing again finds it current.
    assert (await install(conn)).action == "unchanged"


async def test_refuses_what_it_cannot_convert_and_changes_nothing(
    pgmq_db: asyncpg.Connection,
) -> None:
    conn = pgmq_db
    await conn.execute("CREATE TABLE pgmq.my_table (x int)")
    await conn.execute(
        "INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged) "
        "VALUES ('parts', true, false)"
    )
    before = (await queue_state(conn), await _rows(conn))
    with pytest.raises(AdoptionRefused) as info:
        await install(conn, adopt=True)
    message = str(info.value)
    assert message.startswith("cannot adopt the PGMQ in this database (nothing was changed): ")
    assert "\n" not in message
    assert "pgmq.my_table: not a PGMQ object" in message
    assert "queue parts: partitioned (pg_partman) or its tables are missing" in message
    assert (await queue_state(conn), await _rows(conn)) == before


async def test_without_adopt_a_foreign_pgmq_is_left_alone(pgmq_db: asyncpg.Connection) -> None:
    before = await queue_state(pgmq_db)
    with pytest.raises(ConfigError, match="orchestrator install --adopt"):
        await install(pgmq_db)
    assert await queue_state(pgmq_db) == before


PGMQ_CONTROL = """\
comment = 'PGMQ 1.13 (its SQL, as the pgmq Python package ships it), for the adoption tests'
default_version = '1.13.0'
relocatable = false
schema = pgmq
superuser = false
"""


async def _extension_dir(conn: asyncpg.Connection) -> Path | None:
    """The server's extension directory when this process can write to it, else None."""
    share = await conn.fetchval("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'")
    folder = Path(share) / "extension" if share else None
    if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK):
        return None
    return folder


@pytest.fixture
async def pgmq_extension_db(
    new_database: Callable[[], Awaitable[str]],
) -> AsyncIterator[asyncpg.Connection]:
    """A database with PGMQ 1.13 installed as an extension (CREATE EXTENSION pgmq), its control
    and SQL files placed in the server's extension directory."""
    conn = await connect(await new_database())
    folder = await _extension_dir(conn)
    if folder is None:
        await conn.close()
        pytest.skip("the server's extension directory is not writable from here")
    (folder / "pgmq.control").write_text(PGMQ_CONTROL, encoding="utf-8")
    (folder / "pgmq--1.13.0.sql").write_text(pgmq_sql(), encoding="utf-8")
    await conn.execute("CREATE EXTENSION pgmq")
    await conn.execute("SELECT pgmq.create('jobs'), pgmq.create_unlogged('fast')")
    await conn.execute(
        "SELECT pgmq.send_batch('jobs', $1::jsonb[], $2::jsonb[])",
        [{"n": i} for i in range(4)],
        [{"x-pgmq-group": "g"} for _ in range(4)],
    )
    await conn.execute("SELECT pgmq.send('fast', '{\"f\": 1}'::jsonb)")
    await conn.execute("SELECT * FROM pgmq.read('jobs', 600, 1)")
    await conn.execute("SELECT pgmq.archive('jobs', 2::bigint)")
    await conn.execute("SELECT pgmq.enable_notify_insert('jobs', 100)")
    await conn.execute("SELECT pgmq.bind_topic('jobs.#', 'jobs')")
    yield conn
    await conn.close()


async def test_adopt_the_pgmq_extension_without_losing_a_row(
    pgmq_extension_db: asyncpg.Connection,
) -> None:
    conn = pgmq_extension_db
    tables = ("q_jobs", "a_jobs", "q_fast")
    before = {
        t: [tuple(r) for r in await conn.fetch(f"SELECT * FROM pgmq.{t} ORDER BY 1")]
        for t in tables
    }
    assert (await install(conn)).action == "extension"  # left alone without --adopt

    result = await install(conn, adopt=True)

    assert result.action == "adopted"
    assert "adopting the pgmq extension in schema pgmq:" in result.message()
    assert await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pgmq'") == 0
    after = {
        t: [tuple(r) for r in await conn.fetch(f"SELECT * FROM pgmq.{t} ORDER BY 1")]
        for t in tables
    }
    # Column order of the archive is PGMQ's; compare by name.
    assert after["a_jobs"] == before["a_jobs"]
    assert after["q_jobs"] == before["q_jobs"] and after["q_fast"] == before["q_fast"]
    assert [
        r["msg_id"] for r in await conn.fetch("SELECT * FROM pgmq.read_grouped('jobs', 30, 5)")
    ] == []
    await conn.execute("SELECT pgmq.delete('jobs', 1::bigint)")
    got = await conn.fetch("SELECT * FROM pgmq.read_grouped('jobs', 30, 5)")
    assert [r["msg_id"] for r in got] == [3, 4]
    assert await conn.fetchval("SELECT pgmq.send_topic('jobs.x', '{}'::jsonb)") == 1
    throttles = await conn.fetch("SELECT * FROM pgmq.list_notify_insert_throttles()")
    assert [(r["queue_name"], r["throttle_interval_ms"]) for r in throttles] == [("jobs", 100)]
