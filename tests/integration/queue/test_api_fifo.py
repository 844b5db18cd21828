"""FIFO groups: read_grouped, read_grouped_rr, read_grouped_head, their _with_poll forms and the
group index."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import pytest

from tests.integration.queue.helpers import expect_error, ids


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


READS = ("read_grouped", "read_grouped_rr", "read_grouped_head")


async def _send(conn: asyncpg.Connection, queue: str, groups: list[str | None]) -> list[int]:
    """One message per entry, in order; None sends without a group header."""
    headers = [None if g is None else {"x-pgmq-group": g} for g in groups]
    rows = await conn.fetch(
        "SELECT * FROM pgmq.send_batch($1, $2::jsonb[], $3::jsonb[])",
        queue,
        [{"i": i} for i in range(len(groups))],
        headers,
    )
    return ids(rows, "send_batch")


async def _read(
    conn: asyncpg.Connection, function: str, queue: str, qty: int, vt: int = 30
) -> list[int]:
    query = (
        f"SELECT * FROM pgmq.{function}(queue_name=>$1::text, vt=>$2::integer, qty=>$3::integer)"
    )
    return ids(await conn.fetch(query, queue, vt, qty))


@pytest.fixture(params=[False, True], ids=["aggregate", "group_index"])
async def fifo_queue(request: pytest.FixtureRequest, conn: asyncpg.Connection) -> str:
    """A plain queue, with or without the group index (both paths must behave the same)."""
    await conn.execute("SELECT pgmq.create('fifo')")
    if request.param:
        await conn.execute("SELECT pgmq.create_fifo_index(queue_name=>'fifo'::text)")
    return "fifo"


async def test_read_grouped_fills_from_the_oldest_group_first(
    conn: asyncpg.Connection, fifo_queue: str
) -> None:
    m = await _send(conn, fifo_queue, ["a", "b", "a", "b", "a", "c"])
    assert await _read(conn, "read_grouped", fifo_queue, 4) == [m[0], m[2], m[4], m[1]]
    # Group a is in flight, so is b's head: only c is eligible.
    assert await _read(conn, "read_grouped", fifo_queue, 4) == [m[5]]
    assert await _read(conn, "read_grouped", fifo_queue, 4) == []


async def test_read_grouped_rr_interleaves_groups_layer_by_layer(
    conn: asyncpg.Connection, fifo_queue: str
) -> None:
    m = await _send(conn, fifo_queue, ["a", "a", "a", "b", "b", "c"])
    assert await _read(conn, "read_grouped_rr", fifo_queue, 5) == [m[0], m[3], m[5], m[1], m[4]]
    assert await _read(conn, "read_grouped_rr", fifo_queue, 5) == []


async def test_read_grouped_rr_with_fewer_slots_than_groups_takes_oldest_heads(
    conn: asyncpg.Connection, fifo_queue: str
) -> None:
    m = await _send(conn, fifo_queue, ["a", "b", "c", "a"])
    assert await _read(conn, "read_grouped_rr", fifo_queue, 2) == [m[0], m[1]]
    assert await _read(conn, "read_grouped_rr", fifo_queue, 2) == [m[2]]


async def test_read_grouped_head_takes_one_message_per_group(
    conn: asyncpg.Connection, fifo_queue: str
) -> None:
    m = await _send(conn, fifo_queue, ["a", "a", "b", None, None, "c"])
    assert await _read(conn, "read_grouped_head", fifo_queue, 10) == [m[0], m[2], m[3], m[5]]
    assert await _read(conn, "read_grouped_head", fifo_queue, 10) == []
    await conn.execute("SELECT pgmq.delete('fifo', $1::bigint[])", [m[0], m[3]])
    assert await _read(conn, "read_grouped_head", fifo_queue, 10) == [m[1], m[4]]


@pytest.mark.parametrize("function", READS)
async def test_reads_move_vt_and_count_like_read(
    conn: asyncpg.Connection, fifo_queue: str, function: str
) -> None:
    await _send(conn, fifo_queue, ["a"])
    before = await conn.fetchval("SELECT clock_timestamp()")
    rows = await conn.fetch(f"SELECT * FROM pgmq.{function}($1, 60, 1)", fifo_queue)
    assert list(rows[0].keys()) == [
        "msg_id",
        "read_ct",
        "enqueued_at",
        "last_read_at",
        "vt",
        "message",
        "headers",
    ]
    row = rows[0]
    assert row["read_ct"] == 1
    assert row["last_read_at"] >= before
    assert 55 <= (row["vt"] - row["last_read_at"]).total_seconds() <= 60
    assert row["headers"] == {"x-pgmq-group": "a"}


@pytest.mark.parametrize("function", READS)
async def test_a_delayed_head_holds_its_group(
    conn: asyncpg.Connection, fifo_queue: str, function: str
) -> None:
    delayed = await conn.fetchval(
        "SELECT * FROM pgmq.send($1, '{}'::jsonb, '{\"x-pgmq-group\": \"a\"}'::jsonb, 3600)",
        fifo_queue,
    )
    later = await _send(conn, fifo_queue, ["a", "b"])
    assert delayed < later[0]
    assert await _read(conn, function, fifo_queue, 10) == [later[1]]


@pytest.mark.parametrize("function", READS)
async def test_an_expired_vt_returns_the_message_to_the_head_of_its_group(
    conn: asyncpg.Connection, fifo_queue: str, function: str
) -> None:
    m = await _send(conn, fifo_queue, ["a", "a"])
    assert (await _read(conn, function, fifo_queue, 1, vt=0)) == [m[0]]
    # vt 0: visible again at once, still the head of group a.
    rows = await conn.fetch(f"SELECT * FROM pgmq.{function}($1, 30, 1)", fifo_queue)
    assert (ids(rows), rows[0]["read_ct"]) == ([m[0]], 2)
    assert await _read(conn, function, fifo_queue, 1) == []


async def test_a_message_in_flight_stops_the_rest_of_its_group(
    conn: asyncpg.Connection, fifo_queue: str
) -> None:
    m = await _send(conn, fifo_queue, ["a", "a", "a", "a"])
    # m[1] in flight behind a visible head (a plain read took it): the head may go, the
    # messages behind m[1] may not.
    await conn.execute("SELECT pgmq.set_vt('fifo', $1::bigint, 3600)", m[1])
    assert await _read(conn, "read_grouped", fifo_queue, 4) == [m[0]]
    await conn.execute("SELECT pgmq.delete('fifo', $1::bigint[])", [m[0]])
    assert await _read(conn, "read_grouped_rr", fifo_queue, 4) == []


async def test_a_locked_message_stops_the_rest_of_its_group(
    conn: asyncpg.Connection, other_conn: asyncpg.Connection, fifo_queue: str
) -> None:
    """A hand-off holds the rows it owns locked while its handler runs, past vt: a grouped
    read must stop at such a row, not skip over it."""
    m = await _send(conn, fifo_queue, ["a", "a", "a"])
    async with other_conn.transaction():
        await other_conn.execute("SELECT 1 FROM pgmq.q_fifo WHERE msg_id = $1 FOR UPDATE", m[1])
        assert await _read(conn, "read_grouped", fifo_queue, 3) == [m[0]]
        await conn.execute("SELECT pgmq.set_vt('fifo', $1::bigint, 0)", m[0])
        await other_conn.execute("SELECT 1 FROM pgmq.q_fifo WHERE msg_id = $1 FOR UPDATE", m[0])
        assert await _read(conn, "read_grouped", fifo_queue, 3) == []


@pytest.mark.parametrize("function", READS)
async def test_hyphenated_queue_and_group_names(conn: asyncpg.Connection, function: str) -> None:
    await conn.execute("SELECT pgmq.create('order-events')")
    await conn.execute("SELECT pgmq.create_fifo_index('order-events')")
    m = await _send(conn, "order-events", ['it\'s "quoted"; --', "b"])
    assert await _read(conn, function, "order-events", 1) == [m[0]]


@pytest.mark.parametrize("function", [f + "_with_poll" for f in READS])
async def test_with_poll_waits_then_returns(
    conn: asyncpg.Connection, fifo_queue: str, function: str
) -> None:
    query = (
        f"SELECT * FROM pgmq.{function}(queue_name=>$1::text, vt=>30, qty=>2, "
        "max_poll_seconds=>$2::integer, poll_interval_ms=>$3::integer)"
    )
    started = time.monotonic()
    assert await conn.fetch(query, fifo_queue, 1, 50) == []
    assert time.monotonic() - started >= 0.9
    m = await _send(conn, fifo_queue, ["a"])
    assert ids(await conn.fetch(query, fifo_queue, 5, 50)) == [m[0]]
    # Defaults: max_poll_seconds 5, poll_interval_ms 100.
    m2 = await _send(conn, fifo_queue, ["b"])
    assert ids(await conn.fetch(f"SELECT * FROM pgmq.{function}($1, 30, 1)", fifo_queue)) == m2


@pytest.mark.parametrize("function", READS)
@pytest.mark.parametrize(
    ("vt", "qty", "message"),
    [
        (-1, 1, "^vt must be a number of seconds >= 0, got -1$"),
        (30, 0, "^qty must be a positive number of messages, got 0$"),
        (None, 1, "^vt must be a number of seconds >= 0, got NULL$"),
    ],
)
async def test_bad_arguments(
    conn: asyncpg.Connection, fifo_queue: str, function: str, vt: Any, qty: Any, message: str
) -> None:
    await expect_error(
        conn, f"SELECT * FROM pgmq.{function}($1, $2, $3)", fifo_queue, vt, qty, match=message
    )


async def test_unknown_queue(conn: asyncpg.Connection) -> None:
    for function in READS:
        await expect_error(
            conn,
            f"SELECT * FROM pgmq.{function}('nope', 30, 1)",
            match='^queue "nope" does not exist',
            sqlstate="42P01",
        )
    await expect_error(
        conn, "SELECT pgmq.create_fifo_index('nope')", match='^queue "nope"', sqlstate="42P01"
    )


async def test_fifo_indexes_all_and_idempotent(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create('a'), pgmq.create_partitioned('b'), pgmq.create('c-d')")
    for _ in range(2):
        await conn.execute("SELECT pgmq.create_fifo_indexes_all()")
    names = await conn.fetch(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'pgmq'::regnamespace "
        "AND c.relkind IN ('i', 'I') AND c.relname LIKE '%group_idx' ORDER BY 1"
    )
    assert [r["relname"] for r in names] == ["q_a_group_idx", "q_b_group_idx", "q_c-d_group_idx"]


async def test_grouped_reads_on_a_partitioned_queue(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create_partitioned('parts', '10', '100')")
    await conn.execute("SELECT pgmq.create_fifo_index('parts')")
    m = await _send(conn, "parts", ["a", "b", "a"] * 10)
    assert await _read(conn, "read_grouped", "parts", 3) == [m[0], m[2], m[3]]
    assert await _read(conn, "read_grouped_head", "parts", 3) == [m[1]]


async def test_the_skip_scan_uses_the_group_index(conn: asyncpg.Connection) -> None:
    """With the group index the heads come from one index probe per group: the plan of the
    head query scans the group index and never the whole table."""
    await conn.execute("SELECT pgmq.create('deep')")
    await conn.execute("SELECT pgmq.create_fifo_index('deep')")
    await conn.execute(
        "INSERT INTO pgmq.q_deep (vt, message, headers) "
        "SELECT now(), '{}'::jsonb, jsonb_build_object('x-pgmq-group', 'g' || (i % 20)) "
        "FROM generate_series(1, 20000) i"
    )
    await conn.execute("ANALYZE pgmq.q_deep")
    sql = await conn.fetchval("SELECT pgmq_ext.group_heads_sql('pgmq.q_deep', true)")
    async with conn.transaction():
        plan = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON, ANALYZE) {sql}", await conn.fetchval("SELECT now()"), 10
        )
    nodes = _plan_nodes(plan[0]["Plan"])
    assert ("Index Only Scan", "q_deep_group_idx") in nodes or (
        "Index Scan",
        "q_deep_group_idx",
    ) in nodes
    assert not [n for n in nodes if n[0] == "Seq Scan"], nodes
    assert len(await _read(conn, "read_grouped_head", "deep", 50)) == 20


def _plan_nodes(node: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(node type, index name) of every node of an EXPLAIN (FORMAT JSON) plan."""
    found = [(str(node["Node Type"]), node.get("Index Name"))]
    for child in node.get("Plans", []):
        found += _plan_nodes(child)
    return found


@pytest.mark.parametrize("function", READS)
async def test_heads_behind_a_long_blocked_group_are_found(
    conn: asyncpg.Connection, fifo_queue: str, function: str
) -> None:
    """The oldest visible messages all belong to a group whose head is in flight: the heads
    of the other groups lie far behind them, and are still found (and none of the blocked
    group)."""
    m = await _send(conn, fifo_queue, ["a"] * 300 + ["b", "c"])
    assert await _read(conn, "read_grouped_head", fifo_queue, 1) == [m[0]]
    assert await _read(conn, function, fifo_queue, 1) == [m[300]]
    assert await _read(conn, function, fifo_queue, 5) == [m[301]]
