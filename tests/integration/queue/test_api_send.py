"""send() and send_batch(): all six shapes of each, positional and with named arguments."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from tests.integration.queue.helpers import ids


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


H = {"trace": "t-1"}
MSG = {"job": 1}

# (call, parameters after the queue name, has headers, delay: None | seconds | 'future')
# written as clients write them: named arguments with explicit casts.
SEND_NAMED = [
    ("pgmq.send(queue_name => $1::text, msg => $2::jsonb)", [MSG], None, None),
    (
        "pgmq.send(queue_name => $1::text, msg => $2::jsonb, headers => $3::jsonb)",
        [MSG, H],
        H,
        None,
    ),
    (
        "pgmq.send(queue_name => $1::text, msg => $2::jsonb, delay => $3::integer)",
        [MSG, 60],
        None,
        60,
    ),
    (
        "pgmq.send(queue_name => $1::text, msg => $2::jsonb, delay => $3::timestamptz)",
        [MSG, "future"],
        None,
        "future",
    ),
    (
        "pgmq.send(queue_name => $1::text, msg => $2::jsonb, headers => $3::jsonb, "
        "delay => $4::integer)",
        [MSG, H, 60],
        H,
        60,
    ),
    (
        "pgmq.send(queue_name => $1::text, msg => $2::jsonb, headers => $3::jsonb, "
        "delay => $4::timestamptz)",
        [MSG, H, "future"],
        H,
        "future",
    ),
]

SEND_POSITIONAL = [
    ("pgmq.send($1, $2::jsonb)", [MSG], None, None),
    ("pgmq.send($1, $2::jsonb, $3::jsonb)", [MSG, H], H, None),
    ("pgmq.send($1, $2::jsonb, $3::integer)", [MSG, 60], None, 60),
    ("pgmq.send($1, $2::jsonb, $3::timestamptz)", [MSG, "future"], None, "future"),
    ("pgmq.send($1, $2::jsonb, $3::jsonb, $4::integer)", [MSG, H, 60], H, 60),
    ("pgmq.send($1, $2::jsonb, $3::jsonb, $4::timestamptz)", [MSG, H, "future"], H, "future"),
]

FUTURE = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def _params(params: list[object]) -> list[object]:
    return [FUTURE if p == "future" else p for p in params]


async def _check_vt(
    conn: asyncpg.Connection, msg_id: int, delay: int | str | None, before: dt.datetime
) -> None:
    row = await conn.fetchrow("SELECT vt, enqueued_at FROM pgmq.q_q WHERE msg_id = $1", msg_id)
    after = await conn.fetchval("SELECT clock_timestamp()")
    if delay is None:
        assert before <= row["vt"] <= after
    elif delay == "future":
        assert row["vt"] == FUTURE
    else:
        assert isinstance(delay, int)
        seconds = dt.timedelta(seconds=delay)
        assert before + seconds <= row["vt"] <= after + seconds


@pytest.mark.parametrize(
    ("call", "params", "headers", "delay"),
    SEND_NAMED + SEND_POSITIONAL,
    ids=[f"named-{i}" for i in range(6)] + [f"positional-{i}" for i in range(6)],
)
async def test_send(
    conn: asyncpg.Connection,
    queue: str,
    call: str,
    params: list[object],
    headers: dict[str, str] | None,
    delay: int | str | None,
) -> None:
    before = await conn.fetchval("SELECT clock_timestamp()")
    rows = await conn.fetch(f"SELECT * FROM {call}", queue, *_params(params))
    assert ids(rows, "send") == [1]
    row = await conn.fetchrow("SELECT * FROM pgmq.q_q")
    assert (row["msg_id"], row["message"], row["headers"], row["read_ct"]) == (
        1,
        MSG,
        headers,
        0,
    )
    assert row["last_read_at"] is None
    await _check_vt(conn, 1, delay, before)
    visible = await conn.fetch("SELECT * FROM pgmq.read($1, 30, 10)", queue)
    assert ids(visible) == ([1] if delay is None else [])


MSGS = [{"n": 1}, {"n": 2}, {"n": 3}]
HS = [{"h": 1}, {"h": 2}, {"h": 3}]

BATCH_NAMED = [
    ("pgmq.send_batch(queue_name => $1::text, msgs => $2::jsonb[])", [MSGS], None, None),
    (
        "pgmq.send_batch(queue_name => $1::text, msgs => $2::jsonb[], headers => $3::jsonb[])",
        [MSGS, HS],
        HS,
        None,
    ),
    (
        "pgmq.send_batch(queue_name => $1::text, msgs => $2::jsonb[], delay => $3::integer)",
        [MSGS, 60],
        None,
        60,
    ),
    (
        "pgmq.send_batch(queue_name => $1::text, msgs => $2::jsonb[], delay => $3::timestamptz)",
        [MSGS, "future"],
        None,
        "future",
    ),
    (
        "pgmq.send_batch(queue_name => $1::text, msgs => $2::jsonb[], headers => $3::jsonb[], "
        "delay => $4::integer)",
        [MSGS, HS, 60],
        HS,
        60,
    ),
    (
        "pgmq.send_batch(queue_name => $1::text, msgs => $2::jsonb[], headers => $3::jsonb[], "
        "delay => $4::timestamptz)",
        [MSGS, HS, "future"],
        HS,
        "future",
    ),
]

BATCH_POSITIONAL = [
    ("pgmq.send_batch($1, $2::jsonb[])", [MSGS], None, None),
    ("pgmq.send_batch($1, $2::jsonb[], $3::jsonb[])", [MSGS, HS], HS, None),
    ("pgmq.send_batch($1, $2::jsonb[], $3::integer)", [MSGS, 60], None, 60),
    ("pgmq.send_batch($1, $2::jsonb[], $3::timestamptz)", [MSGS, "future"], None, "future"),
    ("pgmq.send_batch($1, $2::jsonb[], $3::jsonb[], $4::integer)", [MSGS, HS, 60], HS, 60),
    (
        "pgmq.send_batch($1, $2::jsonb[], $3::jsonb[], $4::timestamptz)",
        [MSGS, HS, "future"],
        HS,
        "future",
    ),
]


@pytest.mark.parametrize(
    ("call", "params", "headers", "delay"),
    BATCH_NAMED + BATCH_POSITIONAL,
    ids=[f"named-{i}" for i in range(6)] + [f"positional-{i}" for i in range(6)],
)
async def test_send_batch(
    conn: asyncpg.Connection,
    queue: str,
    call: str,
    params: list[object],
    headers: list[dict[str, int]] | None,
    delay: int | str | None,
) -> None:
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)  # msg_id 1
    before = await conn.fetchval("SELECT clock_timestamp()")
    rows = await conn.fetch(f"SELECT * FROM {call}", queue, *_params(params))
    assert ids(rows, "send_batch") == [2, 3, 4]
    stored = await conn.fetch("SELECT * FROM pgmq.q_q WHERE msg_id > 1 ORDER BY msg_id")
    assert [r["message"] for r in stored] == MSGS
    assert [r["headers"] for r in stored] == (headers or [None, None, None])
    for msg_id in (2, 3, 4):
        await _check_vt(conn, msg_id, delay, before)
    # One vt for the whole batch.
    assert len({r["vt"] for r in stored}) == 1
    visible = await conn.fetch("SELECT * FROM pgmq.read($1, 30, 10)", queue)
    assert ids(visible) == ([1, 2, 3, 4] if delay is None else [1])


async def test_send_batch_returns_ids_in_message_order(
    conn: asyncpg.Connection, queue: str
) -> None:
    msgs = [{"i": i} for i in range(500)]
    rows = await conn.fetch("SELECT * FROM pgmq.send_batch($1, $2::jsonb[])", queue, msgs)
    sent = ids(rows, "send_batch")
    assert sent == list(range(1, 501))
    stored = await conn.fetch("SELECT msg_id, message FROM pgmq.q_q ORDER BY msg_id")
    assert [(r["msg_id"], r["message"]["i"]) for r in stored] == [(i + 1, i) for i in range(500)]


async def test_send_literal_casts_as_in_the_api(conn: asyncpg.Connection, queue: str) -> None:
    """The examples of pgmq-api.md, with literals instead of parameters."""
    assert await conn.fetchval("SELECT * FROM pgmq.send('q', '{}'::jsonb)") == 1
    assert (
        await conn.fetchval(
            "SELECT * FROM pgmq.send(queue_name => 'q', msg => '{}'::jsonb, delay => 5)"
        )
        == 2
    )
    assert (
        await conn.fetchval(
            "SELECT * FROM pgmq.send(queue_name => 'q', msg => '{}'::jsonb, "
            "headers => '{\"k\": \"v\"}'::jsonb, delay => now() + interval '1 hour')"
        )
        == 3
    )
    assert await conn.fetch(
        "SELECT * FROM pgmq.send_batch('q', ARRAY['{\"a\": 1}', '[1, 2]', '\"text\"', 'null']"
        "::jsonb[], ARRAY['{}', NULL, '{}', '{}']::jsonb[], 0)"
    ) == [(4,), (5,), (6,), (7,)]
    messages = await conn.fetch("SELECT message, headers FROM pgmq.q_q WHERE msg_id >= 4")
    assert [(r["message"], r["headers"]) for r in messages] == [
        ({"a": 1}, {}),
        ([1, 2], None),
        ("text", {}),
        (None, {}),
    ]
    delays = await conn.fetch(
        "SELECT msg_id, vt - enqueued_at > interval '4 seconds' AS later FROM pgmq.q_q "
        "WHERE msg_id <= 3 ORDER BY 1"
    )
    assert [r["later"] for r in delays] == [False, True, True]


async def test_past_timestamp_delay_is_visible_at_once(
    conn: asyncpg.Connection, queue: str
) -> None:
    past = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb, $2::timestamptz)", queue, past)
    await conn.execute(
        "SELECT pgmq.send_batch($1, ARRAY['{}']::jsonb[], $2::timestamptz)", queue, past
    )
    assert ids(await conn.fetch("SELECT * FROM pgmq.read($1, 30, 5)", queue)) == [1, 2]


async def test_delay_zero_is_visible_at_once(conn: asyncpg.Connection, queue: str) -> None:
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb, 0)", queue)
    assert ids(await conn.fetch("SELECT * FROM pgmq.read($1, 30, 5)", queue)) == [1]


async def test_delayed_message_becomes_visible(conn: asyncpg.Connection, queue: str) -> None:
    await conn.execute("SELECT pgmq.send($1, '{\"late\": true}'::jsonb, 1)", queue)
    await conn.execute("SELECT pgmq.send($1, '{\"now\": true}'::jsonb)", queue)
    first = await conn.fetch("SELECT * FROM pgmq.read($1, 30, 5)", queue)
    assert ids(first) == [2]
    # Waits for the delay on the server (no client-side timing).
    later = await conn.fetch(
        "SELECT * FROM pgmq.read_with_poll($1, 30, 5, max_poll_seconds => 10, "
        "poll_interval_ms => 50)",
        queue,
    )
    assert ids(later) == [1]
    assert later[0]["last_read_at"] >= later[0]["enqueued_at"] + dt.timedelta(seconds=1)


async def test_send_is_transactional(conn: asyncpg.Connection, queue: str) -> None:
    tx = conn.transaction()
    await tx.start()
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    await tx.rollback()
    assert await conn.fetch("SELECT * FROM pgmq.read($1, 30, 5)", queue) == []
    assert await conn.fetchval("SELECT * FROM pgmq.send($1, '{}'::jsonb)", queue) == 2
