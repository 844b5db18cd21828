"""Pipelines that change while runs are in flight: renamed steps move everything they hold."""

from __future__ import annotations

import asyncpg

from orchestrator.compiler import apply, plan
from orchestrator.runtime import start_many
from tests.integration.compiler.conftest import Write

V1 = """
pipeline: orders
steps:
  receive: {handler: app.orders:receive, next: [ship, bill]}
  ship: {handler: app.orders:ship}
  bill: {handler: app.orders:bill}
  close: {handler: app.orders:close, after: [ship, bill]}
"""
V2 = """
pipeline: orders
steps:
  receive: {handler: app.orders:receive, next: [dispatch, bill]}
  dispatch: {handler: app.orders:ship, renamed_from: ship}
  bill: {handler: app.orders:bill}
  close: {handler: app.orders:close, after: [dispatch, bill]}
"""


async def _fill(conn: asyncpg.Connection) -> None:
    """3 waiting messages for ship (one with a failed attempt), 2 archived, 1 dead letter, and
    join rows: run A had ship arrive, run B had bill arrive."""
    for n in range(5):
        await conn.execute(
            "SELECT pgmq.send('orders__ship', $1::jsonb, $2::jsonb)",
            {"n": n},
            {"run_id": f"00000000-0000-0000-0000-00000000000{n}", "step": "ship"},
        )
    await conn.execute("SELECT pgmq.archive('orders__ship', ARRAY[1, 2]::bigint[])")
    await conn.execute("UPDATE pgmq.q_orders__ship SET read_ct = 2 WHERE msg_id = 3")
    await conn.execute(
        "SELECT pgmq.send('orders_dlq', $1::jsonb, $2::jsonb)",
        {
            "pipeline": "orders",
            "step": "ship",
            "queue": "orders__ship",
            "payload": {"n": 9},
            "headers": {"step": "ship"},
        },
        {"pipeline": "orders", "step": "ship", "dead_letter": True},
    )
    await conn.execute(
        "INSERT INTO orchestrator.joins (pipeline, step, run_id, arrived, expected) VALUES"
        " ('orders', 'close', gen_random_uuid(), '{\"ship\": {\"a\": 1}}', '{ship,bill}'),"
        " ('orders', 'close', gen_random_uuid(), '{\"bill\": {\"b\": 1}}', '{ship,bill}')"
    )


async def test_renamed_step_moves_messages_archive_dead_letters_and_joins(
    conn: asyncpg.Connection, write: Write
) -> None:
    await apply(conn, write(orders=V1))
    await _fill(conn)
    the_plan = await plan(conn, write(orders=V2))
    assert not the_plan.destructive
    rename = [line for line in the_plan.lines() if line.startswith("~ queue")]
    assert rename == [
        "~ queue orders__ship -> orders__dispatch: rename step ship to dispatch (archive, dead "
        "letters, join rows); move 3 waiting messages from orders__ship to orders__dispatch "
        "(and 2 archived)"
    ]
    await apply(conn, write(orders=V2))
    assert await conn.fetchval("SELECT to_regclass('pgmq.q_orders__ship')") is None
    waiting = await conn.fetch(
        "SELECT msg_id, read_ct, headers FROM pgmq.q_orders__dispatch ORDER BY msg_id"
    )
    assert [(r["msg_id"], r["read_ct"], r["headers"]["step"]) for r in waiting] == [
        (3, 2, "dispatch"),
        (4, 0, "dispatch"),
        (5, 0, "dispatch"),
    ]
    archived = await conn.fetch("SELECT msg_id FROM pgmq.a_orders__dispatch ORDER BY msg_id")
    assert [r["msg_id"] for r in archived] == [1, 2]
    dead = await conn.fetchrow("SELECT message, headers FROM pgmq.q_orders_dlq")
    assert (dead["message"]["step"], dead["message"]["queue"]) == ("dispatch", "orders__dispatch")
    assert dead["message"]["headers"]["step"] == dead["headers"]["step"] == "dispatch"
    joins = await conn.fetch(
        "SELECT arrived, expected FROM orchestrator.joins ORDER BY arrived::text"
    )
    assert [(dict(r["arrived"]), list(r["expected"])) for r in joins] == [
        ({"bill": {"b": 1}}, ["dispatch", "bill"]),
        ({"dispatch": {"a": 1}}, ["dispatch", "bill"]),
    ]
    # new messages get ids past the moved ones
    [run] = await start_many("orders", [{}], conn=conn)
    next_id = await conn.fetchval("SELECT pgmq.send('orders__dispatch', '{}'::jsonb)")
    assert next_id == 6 and run is not None
    assert (await plan(conn, write(orders=V2))).empty


async def test_a_rename_already_applied_is_not_planned_again(
    conn: asyncpg.Connection, write: Write
) -> None:
    await apply(conn, write(orders=V1))
    await apply(conn, write(orders=V2))
    assert (await plan(conn, write(orders=V2))).empty
