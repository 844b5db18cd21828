"""read(), read_with_poll(), pop() and set_vt()."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import asyncpg
import pytest

from tests.integration.queue.helpers import ids


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


READ_NAMED = "SELECT * FROM pgmq.read(queue_name=>$1::text, vt=>$2::integer, qty=>$3::integer)"


async def _send(conn: asyncpg.Connection, queue: str, n: int) -> list[int]:
    rows = await conn.fetch(
        "SELECT * FROM pgmq.send_batch($1, $2::jsonb[])", queue, [{"i": i} for i in range(n)]
    )
    return ids(rows, "send_batch")


async def test_read_oldest_first_moves_vt_and_counts(conn: asyncpg.Connection, queue: str) -> None:
    await _send(conn, queue, 5)
    before = await conn.fetchval("SELECT clock_timestamp()")
    first = await conn.fetch(READ_NAMED, queue, 30, 2)
    assert list(first[0].keys()) == [
        "msg_id",
        "read_ct",
        "enqueued_at",
        "last_read_at",
        "vt",
        "message",
        "headers",
    ]
    assert ids(first) == [1, 2]
    for row in first:
        assert row["read_ct"] == 1
        assert row["last_read_at"] >= before
        assert row["vt"] == row["last_read_at"] + dt.timedelta(seconds=30)
        assert row["message"] == {"i": row["msg_id"] - 1}
    # The returned rows are what is stored.
    stored = await conn.fetch("SELECT * FROM pgmq.q_q WHERE msg_id <= 2 ORDER BY msg_id")
    assert [tuple(r) for r in stored] == [tuple(r) for r in first]
    second = await conn.fetch(READ_NAMED, queue, 30, 10)
    assert ids(second) == [3, 4, 5]
    assert await conn.fetch(READ_NAMED, queue, 30, 10) == []


async def test_read_positional_and_with_conditional(conn: asyncpg.Connection, queue: str) -> None:
    await conn.execute(
        'SELECT pgmq.send_batch($1, ARRAY[\'{"kind": "a", "n": 1}\', '
        '\'{"kind": "b", "n": 2}\', \'{"kind": "a", "n": 3}\', \'[1]\', '
        "'\"text\"']::jsonb[])",
        queue,
    )
    got = await conn.fetch(
        "SELECT * FROM pgmq.read(queue_name=>$1::text, vt=>$2::integer, qty=>$3::integer, "
        "conditional=>$4::jsonb)",
        queue,
        30,
        10,
        {"kind": "a"},
    )
    assert ids(got) == [1, 3]
    got = await conn.fetch("SELECT * FROM pgmq.read($1, 30, 10, '{\"n\": 2}')", queue)
    assert ids(got) == [2]
    assert await conn.fetch("SELECT * FROM pgmq.read($1, 30, 10, '{\"n\": 2}')", queue) == []
    # The default (empty) condition returns every message, including non-objects.
    assert ids(await conn.fetch("SELECT * FROM pgmq.read($1, 30, 10)", queue)) == [4, 5]


async def test_read_with_null_conditional_reads_everything(
    conn: asyncpg.Connection, queue: str
) -> None:
    await _send(conn, queue, 2)
    got = await conn.fetch("SELECT * FROM pgmq.read($1, 30, 10, NULL)", queue)
    assert ids(got) == [1, 2]


async def test_read_vt_zero_leaves_the_message_visible(
    conn: asyncpg.Connection, queue: str
) -> None:
    await _send(conn, queue, 1)
    for expected in (1, 2, 3):
        [row] = await conn.fetch("SELECT * FROM pgmq.read($1, 0, 1)", queue)
        assert row["read_ct"] == expected


async def test_expired_vt_is_delivered_again_with_read_ct_incremented(
    conn: asyncpg.Connection, queue: str
) -> None:
    await _send(conn, queue, 2)
    [first] = await conn.fetch("SELECT * FROM pgmq.read($1, 1, 1)", queue)
    assert (first["msg_id"], first["read_ct"]) == (1, 1)
    [other] = await conn.fetch("SELECT * FROM pgmq.read($1, 300, 1)", queue)
    assert other["msg_id"] == 2
    # Nothing visible until message 1's vt passes; the poll waits for it on the server.
    again = await conn.fetch(
        "SELECT * FROM pgmq.read_with_poll($1, 30, 5, 10, 50)",
        queue,
    )
    assert [(r["msg_id"], r["read_ct"]) for r in again] == [(1, 2)]
    assert again[0]["last_read_at"] >= first["vt"]
    assert again[0]["enqueued_at"] == first["enqueued_at"]


async def test_read_with_poll_named_arguments(conn: asyncpg.Connection, queue: str) -> None:
    await _send(conn, queue, 3)
    got = await conn.fetch(
        "SELECT * FROM pgmq.read_with_poll(queue_name=>$1::text, vt=>$2::integer, "
        "qty=>$3::integer, max_poll_seconds=>$4::integer, poll_interval_ms=>$5::integer, "
        "conditional=>$6::jsonb)",
        queue,
        30,
        5,
        1,
        10,
        {"i": 1},
    )
    assert ids(got) == [2]
    got = await conn.fetch("SELECT * FROM pgmq.read_with_poll($1, 30, 5)", queue)
    assert ids(got) == [1, 3]
    assert all(r["read_ct"] == 1 for r in got)


async def test_read_with_poll_returns_when_a_message_arrives(
    conn: asyncpg.Connection, other_conn: asyncpg.Connection, queue: str
) -> None:
    started = time.monotonic()
    poll = asyncio.ensure_future(
        conn.fetch(
            "SELECT * FROM pgmq.read_with_poll($1, 30, 1, max_poll_seconds => 60, "
            "poll_interval_ms => 20)",
            queue,
        )
    )
    await asyncio.sleep(0.3)
    assert not poll.done()
    await other_conn.execute("SELECT pgmq.send($1, '{\"late\": 1}'::jsonb)", queue)
    rows = await asyncio.wait_for(poll, timeout=120)
    assert [(r["msg_id"], r["message"]) for r in rows] == [(1, {"late": 1})]
    # Far sooner than the 60 s it would wait for nothing.
    assert time.monotonic() - started < 55


async def test_read_with_poll_gives_up_after_max_poll_seconds(
    conn: asyncpg.Connection, queue: str
) -> None:
    started = time.monotonic()
    rows = await conn.fetch(
        "SELECT * FROM pgmq.read_with_poll($1, 30, 1, max_poll_seconds => 1, "
        "poll_interval_ms => 100)",
        queue,
    )
    assert rows == []
    assert time.monotonic() - started >= 1.0
    # max_poll_seconds 0: one attempt, no wait.
    assert await conn.fetch("SELECT * FROM pgmq.read_with_poll($1, 30, 1, 0)", queue) == []


async def test_read_with_poll_ignores_messages_the_condition_excludes(
    conn: asyncpg.Connection, queue: str
) -> None:
    await conn.execute('SELECT pgmq.send($1, \'{"kind": "b"}\'::jsonb)', queue)
    rows = await conn.fetch(
        'SELECT * FROM pgmq.read_with_poll($1, 30, 1, 1, 50, \'{"kind": "a"}\')', queue
    )
    assert rows == []
    assert await conn.fetchval("SELECT read_ct FROM pgmq.q_q") == 0


async def test_pop(conn: asyncpg.Connection, queue: str) -> None:
    await _send(conn, queue, 5)
    await conn.execute("SELECT pgmq.read($1, 300, 1)", queue)  # message 1 is invisible
    [one] = await conn.fetch("SELECT * FROM pgmq.pop(queue_name=>$1::text)", queue)
    assert (one["msg_id"], one["read_ct"], one["message"]) == (2, 0, {"i": 1})
    many = await conn.fetch(
        "SELECT * FROM pgmq.pop(queue_name=>$1::text, qty=>$2::integer)", queue, 10
    )
    assert ids(many) == [3, 4, 5]
    assert await conn.fetch("SELECT * FROM pgmq.pop($1)", queue) == []
    # Popped messages are gone, the invisible one stays.
    assert ids(await conn.fetch("SELECT msg_id FROM pgmq.q_q")) == [1]
    assert await conn.fetchval("SELECT count(*) FROM pgmq.a_q") == 0


async def test_pop_respects_delay(conn: asyncpg.Connection, queue: str) -> None:
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb, 3600)", queue)
    assert await conn.fetch("SELECT * FROM pgmq.pop($1, 5)", queue) == []


SET_VT = [
    ("pgmq.set_vt(queue_name=>$1::text, msg_id=>$2::bigint, vt=>$3::integer)", 2, 100),
    ("pgmq.set_vt(queue_name=>$1::text, msg_id=>$2::bigint, vt=>$3::timestamptz)", 2, "ts"),
    ("pgmq.set_vt(queue_name=>$1::text, msg_ids=>$2::bigint[], vt=>$3::integer)", [2, 3, 99], 100),
    (
        "pgmq.set_vt(queue_name=>$1::text, msg_ids=>$2::bigint[], vt=>$3::timestamptz)",
        [2, 3, 99],
        "ts",
    ),
    ("pgmq.set_vt($1, $2::bigint, $3::integer)", 2, 100),
    ("pgmq.set_vt($1, $2::bigint, $3::timestamptz)", 2, "ts"),
    ("pgmq.set_vt($1, $2::bigint[], $3::integer)", [2, 3, 99], 100),
    ("pgmq.set_vt($1, $2::bigint[], $3::timestamptz)", [2, 3, 99], "ts"),
]
TS = dt.datetime(2100, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("call", "target", "vt"), SET_VT, ids=[f"{i}" for i in range(8)])
async def test_set_vt(
    conn: asyncpg.Connection,
    queue: str,
    call: str,
    target: int | list[int],
    vt: int | str,
) -> None:
    await _send(conn, queue, 4)
    before = await conn.fetchval("SELECT clock_timestamp()")
    rows = await conn.fetch(f"SELECT * FROM {call}", queue, target, TS if vt == "ts" else vt)
    after = await conn.fetchval("SELECT clock_timestamp()")
    expected = [target] if isinstance(target, int) else [2, 3]
    assert sorted(ids(rows)) == expected
    for row in rows:
        if vt == "ts":
            assert row["vt"] == TS
        else:
            assert (
                before + dt.timedelta(seconds=100) <= row["vt"] <= after + dt.timedelta(seconds=100)
            )
        assert row["read_ct"] == 0  # set_vt is not a read
        stored = await conn.fetchrow("SELECT * FROM pgmq.q_q WHERE msg_id = $1", row["msg_id"])
        assert tuple(stored) == tuple(row)
    visible = await conn.fetch("SELECT * FROM pgmq.read($1, 30, 10)", queue)
    assert sorted(ids(visible)) == sorted({1, 2, 3, 4} - set(expected))


async def test_set_vt_makes_an_invisible_message_visible(
    conn: asyncpg.Connection, queue: str
) -> None:
    await _send(conn, queue, 1)
    await conn.execute("SELECT pgmq.read($1, 3600, 1)", queue)
    assert await conn.fetch("SELECT * FROM pgmq.read($1, 30, 1)", queue) == []
    [row] = await conn.fetch("SELECT * FROM pgmq.set_vt($1, 1::bigint, 0)", queue)
    assert row["read_ct"] == 1
    [again] = await conn.fetch("SELECT * FROM pgmq.read($1, 30, 1)", queue)
    assert (again["msg_id"], again["read_ct"]) == (1, 2)


async def test_set_vt_of_a_missing_message_returns_nothing(
    conn: asyncpg.Connection, queue: str
) -> None:
    assert await conn.fetch("SELECT * FROM pgmq.set_vt($1, 42::bigint, 10)", queue) == []
    assert await conn.fetch("SELECT * FROM pgmq.set_vt($1, ARRAY[]::bigint[], 10)", queue) == []


async def test_read_under_repeatable_read_sees_its_snapshot(
    conn: asyncpg.Connection, other_conn: asyncpg.Connection, queue: str
) -> None:
    async with conn.transaction(isolation="repeatable_read"):
        assert await conn.fetch("SELECT * FROM pgmq.read($1, 30, 1)", queue) == []
        await other_conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
        # A snapshot taken before the send cannot see the message.
        assert await conn.fetch("SELECT * FROM pgmq.read($1, 30, 1)", queue) == []
    assert ids(await conn.fetch("SELECT * FROM pgmq.read($1, 30, 1)", queue)) == [1]
