"""delete() and archive(), for one message and for many."""

from __future__ import annotations

import asyncpg
import pytest

from tests.integration.queue.helpers import ids


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


async def _send(conn: asyncpg.Connection, queue: str, n: int) -> None:
    await conn.execute(
        "SELECT pgmq.send_batch($1, $2::jsonb[], $3::jsonb[])",
        queue,
        [{"i": i} for i in range(n)],
        [{"h": i} for i in range(n)],
    )


async def _remaining(conn: asyncpg.Connection) -> list[int]:
    return ids(await conn.fetch("SELECT msg_id FROM pgmq.q_q ORDER BY 1"))


@pytest.mark.parametrize(
    "call",
    [
        "pgmq.delete(queue_name=>$1::text, msg_id=>$2::bigint)",
        "pgmq.delete($1, $2::bigint)",
        "pgmq.delete($1, $2::integer)",
    ],
)
async def test_delete_one(conn: asyncpg.Connection, queue: str, call: str) -> None:
    await _send(conn, queue, 3)
    assert await conn.fetchval(f"SELECT {call}", queue, 2) is True
    assert await _remaining(conn) == [1, 3]
    assert await conn.fetchval(f"SELECT {call}", queue, 2) is False
    assert await conn.fetchval(f"SELECT {call}", queue, 99) is False
    assert await conn.fetchval("SELECT count(*) FROM pgmq.a_q") == 0


@pytest.mark.parametrize(
    "call",
    [
        "pgmq.delete(queue_name=>$1::text, msg_ids=>$2::bigint[])",
        "pgmq.delete($1, $2::bigint[])",
    ],
)
async def test_delete_many(conn: asyncpg.Connection, queue: str, call: str) -> None:
    await _send(conn, queue, 5)
    deleted = await conn.fetch(f"SELECT * FROM {call}", queue, [4, 2, 99, 2])
    assert sorted(ids(deleted, "delete")) == [2, 4]
    assert await _remaining(conn) == [1, 3, 5]
    assert await conn.fetch(f"SELECT * FROM {call}", queue, []) == []
    assert await conn.fetch(f"SELECT * FROM {call}", queue, [2]) == []
    assert await _remaining(conn) == [1, 3, 5]


@pytest.mark.parametrize(
    "call",
    [
        "pgmq.archive(queue_name=>$1::text, msg_id=>$2::bigint)",
        "pgmq.archive($1, $2::bigint)",
        "pgmq.archive($1, $2::integer)",
    ],
)
async def test_archive_one(conn: asyncpg.Connection, queue: str, call: str) -> None:
    await _send(conn, queue, 3)
    [read] = await conn.fetch("SELECT * FROM pgmq.read($1, 30, 1)", queue)
    before = await conn.fetchval("SELECT clock_timestamp()")
    assert await conn.fetchval(f"SELECT {call}", queue, 1) is True
    assert await _remaining(conn) == [2, 3]
    archived = await conn.fetchrow("SELECT * FROM pgmq.a_q")
    # Every column moves as it was, archived_at is set.
    assert tuple(archived)[:7] == tuple(read)
    assert archived["archived_at"] >= before
    assert await conn.fetchval(f"SELECT {call}", queue, 1) is False
    assert await conn.fetchval(f"SELECT {call}", queue, 42) is False
    assert await conn.fetchval("SELECT count(*) FROM pgmq.a_q") == 1


@pytest.mark.parametrize(
    "call",
    [
        "pgmq.archive(queue_name=>$1::text, msg_ids=>$2::bigint[])",
        "pgmq.archive($1, $2::bigint[])",
    ],
)
async def test_archive_many(conn: asyncpg.Connection, queue: str, call: str) -> None:
    await _send(conn, queue, 5)
    archived = await conn.fetch(f"SELECT * FROM {call}", queue, [5, 1, 3, 77])
    assert sorted(ids(archived, "archive")) == [1, 3, 5]
    assert await _remaining(conn) == [2, 4]
    rows = await conn.fetch("SELECT msg_id, message, headers, read_ct FROM pgmq.a_q ORDER BY 1")
    assert [tuple(r) for r in rows] == [
        (1, {"i": 0}, {"h": 0}, 0),
        (3, {"i": 2}, {"h": 2}, 0),
        (5, {"i": 4}, {"h": 4}, 0),
    ]
    assert await conn.fetch(f"SELECT * FROM {call}", queue, [1, 3]) == []
    assert await conn.fetch(f"SELECT * FROM {call}", queue, []) == []


async def test_archive_is_atomic_with_the_transaction(conn: asyncpg.Connection, queue: str) -> None:
    await _send(conn, queue, 2)
    tx = conn.transaction()
    await tx.start()
    await conn.fetch("SELECT * FROM pgmq.archive($1, ARRAY[1, 2]::bigint[])", queue)
    await tx.rollback()
    assert await _remaining(conn) == [1, 2]
    assert await conn.fetchval("SELECT count(*) FROM pgmq.a_q") == 0


async def test_ack_of_a_message_locked_by_a_reader_waits_for_it(
    conn: asyncpg.Connection, other_conn: asyncpg.Connection, queue: str
) -> None:
    """A consumer holding its batch in a transaction keeps it: others' deletes wait."""
    await _send(conn, queue, 1)
    async with conn.transaction():
        await conn.fetch("SELECT msg_id FROM pgmq.q_q WHERE msg_id = 1 FOR UPDATE SKIP LOCKED")
        await other_conn.execute("SET lock_timeout = '200ms'")
        with pytest.raises(asyncpg.LockNotAvailableError):
            await other_conn.fetchval("SELECT pgmq.delete($1, 1::bigint)", queue)
        assert await other_conn.fetch("SELECT * FROM pgmq.read($1, 30, 1)", queue) == []
        assert await conn.fetchval("SELECT pgmq.archive($1, 1::bigint)", queue) is True
    assert await conn.fetchval("SELECT count(*) FROM pgmq.a_q") == 1
