"""Per-queue functions (13_queue_functions.sql): made with the queue, dropped with it, used by
the public signatures (positional and named-argument calls), and giving the same results as
the dynamic path on every kind of queue."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from orchestrator.queue import sqlfiles


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """One database for the module (see conftest.py)."""
    return shared_queue_db


OPERATIONS = [
    "archive",
    "archive_many",
    "delete",
    "delete_many",
    "lock_owned",
    "move_owned",
    "pop",
    "pop_many",
    "read",
    "read_many",
    "send",
    "send_batch",
    "set_vt",
    "set_vt_many",
]

CREATE = {
    "plain": "SELECT pgmq.create($1)",
    "unlogged": "SELECT pgmq.create_unlogged($1)",
    "partitioned by msg_id": "SELECT pgmq.create_partitioned($1, '5', '1000')",
    "partitioned by time": "SELECT pgmq.create_partitioned($1, '1 hour', '1 day')",
}


async def own_functions(conn: asyncpg.Connection, queue: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT split_part(proname, ':', 1) AS op FROM pg_proc"
        " WHERE pronamespace = 'pgmq_ext'::regnamespace AND split_part(proname, ':', 2) = $1"
        " ORDER BY 1",
        queue,
    )
    return [r["op"] for r in rows]


async def calls(conn: asyncpg.Connection) -> dict[str, int]:
    """Calls of per-queue functions in the current transaction (track_functions = all)."""
    rows = await conn.fetch(
        "SELECT funcname, calls FROM pg_stat_xact_user_functions"
        " WHERE schemaname = 'pgmq_ext' AND funcname LIKE '%:%'"
    )
    return {r["funcname"]: r["calls"] for r in rows}


async def test_a_queue_has_its_functions_from_create_to_drop(conn: asyncpg.Connection) -> None:
    for kind, create in CREATE.items():
        name = "order-events" if kind == "plain" else kind.replace(" ", "_")
        await conn.execute(create, name)
        assert await own_functions(conn, name) == OPERATIONS, kind
        assert await conn.fetchval("SELECT pgmq.drop_queue($1)", name)
        assert await own_functions(conn, name) == [], kind


async def test_functions_of_several_messages_keep_one_generic_plan(
    conn: asyncpg.Connection,
) -> None:
    """A LIMIT or an array of ids as a parameter makes the plan cache plan a statement anew on
    every call; the functions taking one run with a generic plan (send_batch's unnest plans
    the same whatever the array), except the acks of a queue partitioned by time, whose plans
    made for the ids prune partitions. The one-message read and pop too: on a large queue the
    plan cache priced their custom plan lower and planned it on every call. A queue
    partitioned by msg_id bounds every statement by a msg_id range in variables, which a
    generic plan prunes at its start: all of its functions run with one."""
    generic = (
        "SELECT split_part(proname, ':', 1) AS op FROM pg_proc"
        " WHERE pronamespace = 'pgmq_ext'::regnamespace AND split_part(proname, ':', 2) = $1"
        " AND 'plan_cache_mode=force_generic_plan' = ANY (proconfig) ORDER BY 1"
    )
    await conn.execute("SELECT pgmq.create('generic')")
    await conn.execute("SELECT pgmq.create_partitioned('generic_parts', '1000', '100000')")
    await conn.execute("SELECT pgmq.create_partitioned('generic_days', '1 day', '7 days')")
    assert [r["op"] for r in await conn.fetch(generic, "generic")] == [
        "archive_many",
        "delete_many",
        "pop",
        "pop_many",
        "read",
        "read_many",
        "set_vt_many",
    ]
    assert [r["op"] for r in await conn.fetch(generic, "generic_days")] == [
        "pop",
        "pop_many",
        "read",
        "read_many",
    ]
    every = (
        "SELECT split_part(proname, ':', 1) AS op FROM pg_proc"
        " WHERE pronamespace = 'pgmq_ext'::regnamespace AND split_part(proname, ':', 2) = $1"
        " ORDER BY 1"
    )
    by_id = [r["op"] for r in await conn.fetch(generic, "generic_parts")]
    assert by_id == [r["op"] for r in await conn.fetch(every, "generic_parts")]
    assert {"read", "read_many", "delete_many", "archive_many", "lock_owned"} <= set(by_id)


async def test_a_mixed_case_name_makes_the_functions_of_the_stored_name(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute("SELECT pgmq.create('Jobs-EU')")
    assert await own_functions(conn, "jobs-eu") == OPERATIONS
    await conn.execute("SELECT pgmq.send('JOBS-eu', '{}'::jsonb)")
    assert len(await conn.fetch("SELECT * FROM pgmq.read('jobs-EU', 30, 5)")) == 1


async def test_public_calls_run_the_queue_functions(conn: asyncpg.Connection) -> None:
    """Positional and named-argument calls (`queue_name=>$1::text`, as PGMQ clients send
    them) of every fast operation reach the queue's own function."""
    await conn.execute("SELECT pgmq.create('order-events')")
    q = "order-events"
    async with conn.transaction():
        await conn.execute("SET LOCAL track_functions = 'all'")
        first = await conn.fetchval(
            "SELECT * FROM pgmq.send(queue_name=>$1::text, msg=>$2::jsonb)", q, {"n": 1}
        )
        await conn.fetchval("SELECT * FROM pgmq.send($1::text, $2::jsonb, 0)", q, {"n": 2})
        ids = await conn.fetch(
            "SELECT * FROM pgmq.send_batch(queue_name=>$1::text, msgs=>$2::jsonb[])",
            q,
            [{"n": 3}, {"n": 4}, {"n": 5}, {"n": 6}],
        )
        read = await conn.fetch(
            "SELECT * FROM pgmq.read(queue_name=>$1::text, vt=>$2::integer, qty=>$3::integer)",
            q,
            30,
            1,
        )
        assert read[0]["msg_id"] == first
        assert await conn.fetchval(
            "SELECT pgmq.delete(queue_name=>$1::text, msg_id=>$2::bigint)", q, first
        )
        many = await conn.fetch("SELECT * FROM pgmq.read($1::text, 0, 2)", q)
        assert await conn.fetchval("SELECT pgmq.archive($1::text, $2::bigint)", q, many[0][0])
        assert await conn.fetch(
            "SELECT * FROM pgmq.archive(queue_name=>$1::text, msg_ids=>$2::bigint[])",
            q,
            [ids[0][0]],
        )
        assert await conn.fetch("SELECT * FROM pgmq.delete($1::text, $2::bigint[])", q, [ids[1][0]])
        assert len(await conn.fetch("SELECT * FROM pgmq.pop(queue_name=>$1::text)", q)) == 1
        assert await conn.fetch(
            "SELECT * FROM pgmq.set_vt(queue_name=>$1::text, msg_id=>$2::bigint, vt=>$3::integer)",
            q,
            ids[3][0],
            0,
        )
        assert await conn.fetch(
            "SELECT * FROM pgmq.set_vt($1::text, $2::bigint[], now())", q, [ids[3][0]]
        )
        assert len(await conn.fetch("SELECT * FROM pgmq.pop($1::text, 5)", q)) == 1
        got = await calls(conn)
    assert got == {
        f"send:{q}": 2,
        f"send_batch:{q}": 1,
        f"read:{q}": 1,
        f"read_many:{q}": 1,
        f"delete:{q}": 1,
        f"delete_many:{q}": 1,
        f"archive:{q}": 1,
        f"archive_many:{q}": 1,
        f"pop:{q}": 1,
        f"pop_many:{q}": 1,
        f"set_vt:{q}": 1,
        f"set_vt_many:{q}": 1,
    }


async def test_read_with_poll_and_topics_use_them_too(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create('orders')")
    await conn.execute("SELECT pgmq.bind_topic('orders.*', 'orders')")
    async with conn.transaction():
        await conn.execute("SET LOCAL track_functions = 'all'")
        assert await conn.fetchval("SELECT pgmq.send_topic('orders.created', '{}'::jsonb)") == 1
        rows = await conn.fetch("SELECT * FROM pgmq.read_with_poll('orders', 30, 1, 1, 10)")
        assert len(rows) == 1
        got = await calls(conn)
    assert got == {"send:orders": 1, "read:orders": 1}


async def test_fifo_groups_sent_through_them_read_in_order(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create('fifo')")
    await conn.execute("SELECT pgmq.create_fifo_index('fifo')")
    headers = [{"x-pgmq-group": g} for g in ("a", "a", "b", "a", "b")]
    await conn.execute(
        "SELECT pgmq.send_batch('fifo', $1::jsonb[], $2::jsonb[])",
        [{"i": i} for i in range(5)],
        headers,
    )
    heads = await conn.fetch("SELECT * FROM pgmq.read_grouped_head('fifo', 30, 10)")
    assert [r["message"]["i"] for r in heads] == [0, 2]
    assert await conn.fetchval("SELECT pgmq.delete('fifo', $1::bigint)", heads[0]["msg_id"])
    assert await conn.fetchval("SELECT pgmq.archive('fifo', $1::bigint)", heads[1]["msg_id"])
    heads = await conn.fetch("SELECT * FROM pgmq.read_grouped_head('fifo', 30, 10)")
    assert [r["message"]["i"] for r in heads] == [1, 4]


def _comparable(rows: list[asyncpg.Record]) -> list[tuple[Any, ...]]:
    """Rows without their times (two queues are filled at different moments)."""
    return [(r["msg_id"], r["read_ct"], r["message"], r["headers"]) for r in rows]


async def _scenario(conn: asyncpg.Connection, q: str) -> list[Any]:
    """The same calls on queue `q`; everything they return."""
    out: list[Any] = []
    one = "SELECT * FROM pgmq.send($1::text, $2::jsonb, $3::jsonb)"
    out.append(await conn.fetchval(one, q, {"k": "x", "n": 0}, {"h": 1}))
    out.append(await conn.fetchval("SELECT * FROM pgmq.send($1::text, '{}'::jsonb, 3600)", q))
    batch = [{"k": "x" if i % 2 else "y", "n": i} for i in range(1, 9)]
    out.append(
        [r[0] for r in await conn.fetch("SELECT * FROM pgmq.send_batch($1, $2::jsonb[])", q, batch)]
    )
    out.append(_comparable(await conn.fetch("SELECT * FROM pgmq.read($1, 30, 1)", q)))
    out.append(_comparable(await conn.fetch("SELECT * FROM pgmq.read($1, 0, 3)", q)))
    cond = "SELECT * FROM pgmq.read($1, 30, $2, $3::jsonb)"
    out.append(_comparable(await conn.fetch(cond, q, 1, {"k": "y"})))
    out.append(_comparable(await conn.fetch(cond, q, 10, {"k": "x"})))
    out.append(_comparable(await conn.fetch(cond, q, 10, {})))
    out.append(await conn.fetchval("SELECT pgmq.delete($1, 1::bigint)", q))
    out.append(await conn.fetchval("SELECT pgmq.delete($1, 1::bigint)", q))
    out.append(await conn.fetchval("SELECT pgmq.archive($1, 3::bigint)", q))
    out.append(await conn.fetchval("SELECT pgmq.archive($1, 3::bigint)", q))
    many = "SELECT * FROM pgmq.{}($1, ARRAY[4, 5, 999]::bigint[])"
    out.append(sorted(r[0] for r in await conn.fetch(many.format("delete"), q)))
    out.append(
        sorted(
            r[0]
            for r in await conn.fetch("SELECT * FROM pgmq.archive($1, ARRAY[6, 7, 4]::bigint[])", q)
        )
    )
    set_vt = "SELECT * FROM pgmq.set_vt($1, {}, {})"
    out.append(_comparable(await conn.fetch(set_vt.format("2::bigint", "0"), q)))
    out.append(_comparable(await conn.fetch(set_vt.format("999::bigint", "0"), q)))
    out.append(
        _comparable(await conn.fetch(set_vt.format("ARRAY[2, 8, 999]::bigint[]", "now()"), q))
    )
    await conn.execute(
        "UPDATE pgmq.{} SET vt = now() - interval '1 second'".format('"q_' + q + '"')
    )
    out.append(_comparable(await conn.fetch("SELECT * FROM pgmq.pop($1)", q)))
    out.append(_comparable(await conn.fetch("SELECT * FROM pgmq.pop($1, 10)", q)))
    archived = await conn.fetch(f'SELECT * FROM pgmq."a_{q}" ORDER BY msg_id')
    out.append(_comparable(archived))
    out.append([json.dumps(r["message"]) for r in archived])
    return out


@pytest.mark.parametrize("kind", list(CREATE))
async def test_the_queue_functions_give_what_the_dynamic_path_gives(
    conn: asyncpg.Connection, kind: str
) -> None:
    await conn.execute(CREATE[kind], "fast")
    await conn.execute(CREATE[kind], "slow")
    await conn.execute("SELECT pgmq_ext.drop_queue_functions('slow')")
    assert await own_functions(conn, "slow") == []
    fast = await _scenario(conn, "fast")
    slow = await _scenario(conn, "slow")
    assert fast == slow
    assert fast[9] is False and fast[11] is False  # acks of a message already gone


async def test_errors_are_those_of_the_dynamic_path(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create('q')")
    for call in (
        "SELECT * FROM pgmq.read('nope', 30, 1)",
        "SELECT pgmq.delete('nope', 1::bigint)",
        "SELECT * FROM pgmq.archive('nope', ARRAY[1]::bigint[])",
        "SELECT * FROM pgmq.send('nope', '{}'::jsonb)",
        "SELECT * FROM pgmq.pop('nope')",
    ):
        with pytest.raises(asyncpg.UndefinedTableError, match='queue "nope" does not exist'):
            await conn.execute(call)
    with pytest.raises(asyncpg.InvalidParameterValueError, match="qty must be a positive"):
        await conn.execute("SELECT * FROM pgmq.read('q', 30, 0)")
    with pytest.raises(asyncpg.InvalidParameterValueError, match="vt must be"):
        await conn.execute("SELECT * FROM pgmq.read('q', -1, 1)")
    with pytest.raises(asyncpg.InvalidParameterValueError, match="msgs cannot be NULL or empty"):
        await conn.execute("SELECT * FROM pgmq.send_batch('q', ARRAY[]::jsonb[])")
    with pytest.raises(asyncpg.InvalidParameterValueError, match="headers array length"):
        await conn.execute(
            "SELECT * FROM pgmq.send_batch('q', ARRAY['{}']::jsonb[], ARRAY['{}', '{}']::jsonb[])"
        )
    long_name = "x" * 60
    with pytest.raises(asyncpg.UndefinedTableError, match="does not exist"):
        await conn.execute("SELECT * FROM pgmq.read($1, 30, 1)", long_name)


async def test_applying_the_function_files_makes_every_queues_functions_anew(
    conn: asyncpg.Connection,
) -> None:
    """An upgraded install (functions re-applied) gives existing queues their functions."""
    await conn.execute("SELECT pgmq.create('old')")
    await conn.execute("SELECT pgmq.create_partitioned('old_parts', '10', '100')")
    for name in ("old", "old_parts"):
        await conn.execute("SELECT pgmq_ext.drop_queue_functions($1)", name)
    await conn.execute(sqlfiles.functions_sql())
    assert await own_functions(conn, "old") == OPERATIONS
    assert await own_functions(conn, "old_parts") == OPERATIONS


async def test_a_name_that_is_no_queue_never_reaches_a_function(
    conn: asyncpg.Connection,
) -> None:
    """The look-up quotes the name: text that would be SQL is just a name that is not found."""
    await conn.execute("SELECT pgmq.create('q')")
    for name in ('q"(1); DROP TABLE pgmq.q_q; --', "q'", "read:q", "q;"):
        assert await conn.fetchval("SELECT pgmq_ext.queue_function($1, 'read')", name) is None
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_q") == 0


async def test_no_functions_for_a_queue_dropped_before_they_are_made(
    conn: asyncpg.Connection, other_conn: asyncpg.Connection
) -> None:
    """Making a queue's functions waits for the queue's lock and then finds the queue gone
    (a drop committed meanwhile): nothing is left behind for the name."""
    await conn.execute("SELECT pgmq.create('brief')")
    async with other_conn.transaction():
        assert await other_conn.fetchval("SELECT pgmq.drop_queue('brief')")
        waiting = asyncio.create_task(
            conn.execute("SELECT pgmq_ext.create_queue_functions('brief')")
        )
        pid = conn.get_server_pid()
        waits = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1"
        while True:  # until the call waits for the drop's lock
            await other_conn.execute("SELECT pg_stat_clear_snapshot()")
            if await other_conn.fetchval(waits, pid) == "Lock":
                break
            await asyncio.sleep(0.01)
    await waiting
    assert await own_functions(conn, "brief") == []


async def _hide(conn: asyncpg.Connection, q: str, up_to: int) -> None:
    """Messages 1..up_to in flight for an hour, then fresh statistics."""
    await conn.execute(
        f"UPDATE pgmq.\"q_{q}\" SET vt = now() + interval '1 hour' WHERE msg_id <= $1", up_to
    )
    await conn.execute(f'ANALYZE pgmq."q_{q}"')


async def _fill(conn: asyncpg.Connection, q: str, count: int) -> None:
    await conn.execute(
        "SELECT pgmq.send_batch($1, ARRAY(SELECT jsonb_build_object('i', i, 'odd', i % 2 = 1)"
        " FROM generate_series(1, $2) i))",
        q,
        count,
    )


@pytest.mark.parametrize("kind", list(CREATE))
async def test_reads_across_the_head_of_the_queue(conn: asyncpg.Connection, kind: str) -> None:
    """The queue functions read the head of the queue (pgmq_ext.queue_head: the lowest
    msg_id + 1000 + 10 x qty) with their cached statement and the rest with a statement
    planned for the call: together they give the oldest visible messages, each once, in
    msg_id order, also with vt 0 (the messages just read are visible again)."""
    q = "span"
    await conn.execute(CREATE[kind], q)
    await _fill(conn, q, 3000)
    await _hide(conn, q, 1095)  # the head of a read of 10 ends below 1101
    ids = "SELECT msg_id FROM pgmq.{}"
    got = [r[0] for r in await conn.fetch(ids.format("read($1, 0, 10)"), q)]
    assert got == list(range(1096, 1106))
    got = [r[0] for r in await conn.fetch(ids.format("read($1, 0, 10, '{\"odd\": true}')"), q)]
    assert got == list(range(1097, 1117, 2))
    got = [r[0] for r in await conn.fetch(ids.format("read($1, 30, 1)"), q)]
    assert got == [1096]
    await _hide(conn, q, 1200)  # the whole head of a read of one
    got = [r[0] for r in await conn.fetch(ids.format("read($1, 30, 1)"), q)]
    assert got == [1201]
    got = [r[0] for r in await conn.fetch(ids.format("read_with_poll($1, 30, 1, 1, 10)"), q)]
    assert got == [1202]
    got = [r[0] for r in await conn.fetch(ids.format("pop($1, 10)"), q)]
    assert got == list(range(1203, 1213))
    got = [r[0] for r in await conn.fetch(ids.format("pop($1)"), q)]
    assert got == [1213]
    await conn.execute(f'DELETE FROM pgmq."q_{q}"')
    assert await conn.fetch(ids.format("read($1, 30, 5)"), q) == []
    assert await conn.fetch(ids.format("pop($1)"), q) == []


async def test_a_queue_whose_oldest_messages_are_in_flight_is_read_at_its_visible_end(
    conn: asyncpg.Connection,
) -> None:
    """A cached plan walks the primary key and cannot tell how many of the oldest messages
    are hidden: with 19,990 of 20,000 in flight, a plan of that shape looks at all of them on
    every read. Repeated reads (past the plan cache's first five custom plans) look at no more
    than the head of the queue and the few visible messages (pg_stat_xact_user_tables)."""
    q = "deep"
    await conn.execute("SELECT pgmq.create($1)", q)
    await _fill(conn, q, 20_000)
    await _hide(conn, q, 19_990)
    fetched = (
        "SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0)"
        " FROM pg_stat_xact_user_tables WHERE relid = $1::regclass"
    )
    table = f'pgmq."q_{q}"'
    async with conn.transaction():
        read: list[int] = []
        for qty in (1, 1, 1, 1, 1, 1, 1, 1, 2):
            before = await conn.fetchval(fetched, table)
            read += [r[0] for r in await conn.fetch("SELECT * FROM pgmq.read($1, 30, $2)", q, qty)]
            looked_at = await conn.fetchval(fetched, table) - before
            assert looked_at < 5_000, (qty, looked_at)
        assert read == list(range(19_991, 20_001))
