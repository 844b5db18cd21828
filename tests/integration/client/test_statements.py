"""The client runs the queue layer's own statements, prepared, and copes when they go stale.

The hot operations fetch `pgmq_ext.statements()` once per queue and run those statements
directly; a queue dropped (and perhaps created again) since must still give the functions'
errors or just work, and a database without that function falls back to the `pgmq.*` calls.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from orchestrator.errors import QueueError
from orchestrator.queue import Queue, QueueNotFound
from tests.integration.client.test_errors import NoRoundTrip

# Every operation that runs a statement of the queue, with the statement it uses.
HOT_CALLS: dict[str, Callable[[Queue, str, Any], Awaitable[Any]]] = {
    "send": lambda q, name, conn: q.send(name, {"a": 1}, conn=conn),
    "send_at": lambda q, name, conn: q.send(name, 1, delay=datetime.now(UTC), conn=conn),
    "send_batch": lambda q, name, conn: q.send_batch(name, [1, 2], conn=conn),
    "send_batch_at": lambda q, name, conn: q.send_batch(
        name, [1], delay=datetime.now(UTC), conn=conn
    ),
    "read": lambda q, name, conn: q.read(name, conn=conn),
    "read_many": lambda q, name, conn: q.read(name, qty=5, conn=conn),
    "read_conditional": lambda q, name, conn: q.read(name, conditional={"a": 1}, conn=conn),
    "read_many_conditional": lambda q, name, conn: q.read(
        name, qty=5, conditional={"a": 1}, conn=conn
    ),
    "pop": lambda q, name, conn: q.pop(name, conn=conn),
    "pop_many": lambda q, name, conn: q.pop(name, 5, conn=conn),
    "delete": lambda q, name, conn: q.delete(name, 1, conn=conn),
    "delete_many": lambda q, name, conn: q.delete(name, [1, 2], conn=conn),
    "archive": lambda q, name, conn: q.archive(name, 1, conn=conn),
    "archive_many": lambda q, name, conn: q.archive(name, [1, 2], conn=conn),
    "set_vt": lambda q, name, conn: q.set_vt(name, 1, 10, conn=conn),
    "set_vt_at": lambda q, name, conn: q.set_vt(name, 1, datetime.now(UTC), conn=conn),
    "set_vt_many": lambda q, name, conn: q.set_vt(name, [1], timedelta(seconds=5), conn=conn),
    "set_vt_many_at": lambda q, name, conn: q.set_vt(name, [1], datetime.now(UTC), conn=conn),
}


async def _prepared(conn: Any) -> list[str]:
    """The statements prepared on this connection (asyncpg's, by their text)."""
    rows = await conn.fetch("SELECT statement FROM pg_prepared_statements")
    return [row[0] for row in rows]


async def test_every_hot_operation_runs_the_queue_statement(conn: Any) -> None:
    q = Queue(conn)
    await q.create("jobs")
    statements = dict(await conn.fetch("SELECT name, sql FROM pgmq_ext.statements('jobs')"))
    assert sorted(statements) == sorted(HOT_CALLS)
    for name, call in HOT_CALLS.items():
        await call(q, "jobs", None)
        assert statements[name] in await _prepared(conn), name
    assert not [s for s in await _prepared(conn) if "pgmq.send" in s or "pgmq.read" in s]


async def test_the_statements_do_what_the_api_says(conn: Any) -> None:
    q = Queue(conn)
    await q.create("jobs")
    first = await q.send("jobs", {"a": 1}, headers={"h": 1})
    later = await q.send("jobs", {"a": 2}, delay=3600)
    batch = await q.send_batch("jobs", [{"a": 1}, [1, 2], None], headers=[None, {"h": 2}, None])
    [message] = await q.read("jobs", vt=30, conditional={"a": 1})
    assert (message.msg_id, message.headers, message.read_ct) == (first, {"h": 1}, 1)
    assert message.vt - message.last_read_at == timedelta(seconds=30)
    rest = await q.read("jobs", vt=30, qty=10)
    assert [m.msg_id for m in rest] == batch
    assert [m.message for m in rest] == [{"a": 1}, [1, 2], None]
    assert [m.headers for m in rest] == [None, {"h": 2}, None]
    moved = await q.set_vt("jobs", [first, *batch], 0)
    assert sorted(m.msg_id for m in moved) == sorted([first, *batch])
    assert await q.archive("jobs", first) is True
    assert await q.archive("jobs", first) is False
    assert await q.delete("jobs", batch[0]) is True
    assert await q.delete("jobs", batch[0]) is False
    assert await q.archive("jobs", [batch[1], 999]) == [batch[1]]
    [popped] = await q.pop("jobs", 5)
    assert popped.msg_id == batch[2]
    assert await q.pop("jobs") == []
    assert [m.msg_id for m in await q.set_vt("jobs", [later], 0)] == [later]
    assert [m.msg_id for m in await q.pop("jobs")] == [later]
    assert await conn.fetchval("SELECT count(*) FROM pgmq.a_jobs") == 2


async def test_several_messages_come_oldest_first_whatever_the_scan_order(conn: Any) -> None:
    q = Queue(conn)
    await q.create("jobs")
    ids = await q.send_batch("jobs", [1, 2, 3, 4])
    await q.set_vt("jobs", ids[0], 0)  # its new row version now lies after the others
    await q.set_vt("jobs", ids[2], 0)
    await conn.execute("SET enable_indexscan = off")
    await conn.execute("SET enable_bitmapscan = off")
    read_many = await conn.fetchval(
        "SELECT sql FROM pgmq_ext.statements('jobs') WHERE name = 'read_many'"
    )
    # The statement alone returns the rows in scan order (vt 0: they stay visible).
    scanned = [r["msg_id"] for r in await conn.fetch(read_many, 0, 10)]
    assert scanned != ids and sorted(scanned) == ids
    assert [m.msg_id for m in await q.read("jobs", vt=0, qty=10)] == ids
    assert [m.msg_id for m in await q.pop("jobs", 10)] == ids


async def test_a_delay_uses_the_server_clock(conn: Any) -> None:
    q = Queue(conn)
    await q.create("jobs")
    msg_id = await q.send("jobs", 1, delay=90)
    delay = await conn.fetchval(
        "SELECT vt - enqueued_at FROM pgmq.q_jobs WHERE msg_id = $1", msg_id
    )
    assert timedelta(seconds=89) < delay < timedelta(seconds=91)
    [moved] = await q.set_vt("jobs", [msg_id], 30)
    assert timedelta(seconds=29) < moved.vt - datetime.now(UTC) < timedelta(seconds=31)


async def test_names_in_any_case_reach_the_same_queue(q: Queue) -> None:
    await q.send("JOBS", {"a": 1})
    await q.send("Jobs", {"a": 2})
    assert [m.message for m in await q.read("jobs", qty=5)] == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("call", sorted(HOT_CALLS))
async def test_a_dropped_queue_gives_the_functions_error(q: Queue, call: str) -> None:
    await HOT_CALLS[call](q, "jobs", None)  # the statements are fetched and kept
    await q.drop("jobs")
    with pytest.raises(QueueNotFound, match=r'^queue "jobs" does not exist'):
        await HOT_CALLS[call](q, "jobs", None)


@pytest.mark.parametrize("call", sorted(HOT_CALLS))
async def test_a_dropped_queue_partitioned_by_msg_id_gives_the_functions_error(
    q: Queue, call: str
) -> None:
    """Its reads and pops call the queue's own functions, which the drop takes with it."""
    await q.drop("jobs")
    await q.create_partitioned("jobs", 10, 100)
    await HOT_CALLS[call](q, "jobs", None)
    await q.drop("jobs")
    with pytest.raises(QueueNotFound, match=r'^queue "jobs" does not exist'):
        await HOT_CALLS[call](q, "jobs", None)


@pytest.mark.parametrize("op", ["read", "pop"])
async def test_a_dropped_queue_partitioned_by_msg_id_in_a_caller_transaction(
    q: Queue, conn: Any, pool: Any, op: str
) -> None:
    await q.drop("jobs")
    await q.create_partitioned("jobs", 10, 100)
    await q.send("jobs", 1)
    await getattr(q, op)("jobs", conn=conn)
    await pool.execute("SELECT pgmq.drop_queue('jobs')")
    async with conn.transaction():
        with pytest.raises(QueueNotFound, match=r'^queue "jobs" does not exist'):
            await getattr(q, op)("jobs", conn=conn)


async def test_a_dropped_queue_in_a_caller_transaction(q: Queue, conn: Any, pool: Any) -> None:
    await q.send("jobs", 1)
    await q.read("jobs", vt=0, conn=conn)
    await pool.execute("SELECT pgmq.drop_queue('jobs')")
    async with conn.transaction():
        await conn.execute("SAVEPOINT before_read")
        with pytest.raises(QueueNotFound, match=r'^queue "jobs" does not exist'):
            await q.read("jobs", conn=conn)
        await conn.execute("ROLLBACK TO SAVEPOINT before_read")
        await q.create("jobs", conn=conn)
        await q.send("jobs", 2, conn=conn)
    assert [m.message for m in await q.read("jobs")] == [2]


async def test_a_queue_created_again_keeps_working(q: Queue, conn: Any) -> None:
    for kind in ("plain", "partitioned", "unlogged"):
        await q.send("jobs", kind, conn=conn)
        assert [m.message for m in await q.read("jobs", conn=conn)] == [kind]
        await q.drop("jobs")
        if kind == "plain":
            await q.create_partitioned("jobs", 10, 100)
        else:
            await q.create_unlogged("jobs")
    assert await q.pop("jobs", conn=conn) == []


async def test_a_changed_row_type_is_recovered_from(q: Queue, conn: Any) -> None:
    await q.send("jobs", 1)
    await q.read("jobs", vt=0, conn=conn)
    transaction = conn.transaction()
    await transaction.start()
    await conn.execute("ALTER TABLE pgmq.q_jobs ALTER COLUMN read_ct TYPE bigint")
    with pytest.raises(asyncpg.InvalidCachedStatementError):
        await q.read("jobs", vt=0, conn=conn)  # a transaction cannot prepare it again
    await transaction.rollback()
    await conn.execute("ALTER TABLE pgmq.q_jobs ALTER COLUMN read_ct TYPE bigint")
    [message] = await q.read("jobs", vt=0, conn=conn)
    assert message.read_ct == 2


async def test_without_the_statements_function_the_functions_are_used(conn: Any) -> None:
    await conn.execute("DROP FUNCTION pgmq_ext.statements(text)")
    q = Queue(conn)
    await q.create("jobs")
    for call in HOT_CALLS.values():
        await call(q, "jobs", None)
    prepared = await _prepared(conn)
    assert any("pgmq.send(" in s for s in prepared)
    assert not any(s.startswith("INSERT INTO pgmq.q_jobs") for s in prepared)
    assert (await q.metrics("jobs")).total_messages == 5
    with pytest.raises(QueueNotFound, match='queue "nowhere" does not exist'):
        await q.send("nowhere", 1)


async def test_statements_false_calls_the_functions(conn: Any) -> None:
    q = Queue(conn, statements=False)
    await q.create("jobs")
    for call in HOT_CALLS.values():
        await call(q, "jobs", None)
    prepared = await _prepared(conn)
    assert not any("pgmq_ext.statements" in s or s.startswith("INSERT") for s in prepared)
    assert any("pgmq.read(" in s for s in prepared)


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda q: q.read("jobs", vt=-1), "^vt must be a number of seconds >= 0, got -1$"),
        (lambda q: q.read("jobs", vt=None), "^vt must be a number of seconds >= 0, got NULL$"),
        (lambda q: q.read("jobs", qty=0), "^qty must be a positive number of messages, got 0$"),
        (
            lambda q: q.read("jobs", qty=None),
            "^qty must be a positive number of messages, got NULL$",
        ),
        (lambda q: q.pop("jobs", -2), "^qty must be a positive number of messages, got -2$"),
        (lambda q: q.send("jobs", 1, delay=-1), "seconds >= 0"),
        (lambda q: q.send_batch("jobs", []), "at least one message"),
        (lambda q: q.set_vt("jobs", 1, -5), "seconds >= 0"),
    ],
)
async def test_arguments_are_checked_before_any_round_trip(
    call: Callable[[Queue], Awaitable[Any]], problem: str
) -> None:
    with pytest.raises(QueueError, match=problem):
        await call(Queue(NoRoundTrip()))
