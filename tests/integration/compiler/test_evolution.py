"""Pipelines that change while runs are in flight: renamed steps move everything they hold."""

from __future__ import annotations

import asyncpg
import pytest

from orchestrator.compiler import DestructiveChange, IncompatibleChange, apply, plan
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
    await conn.execute(
        "INSERT INTO orchestrator.paused_steps (pipeline, step) VALUES ('orders', 'ship')"
    )
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
    paused = await conn.fetch(
        "SELECT step FROM orchestrator.paused_steps WHERE pipeline = 'orders'"
    )
    assert [r["step"] for r in paused] == ["dispatch"]  # a paused step stays paused renamed
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


REMOVED = """
pipeline: orders
steps:
  receive: {handler: app.orders:receive, next: [bill]}
  bill: {handler: app.orders:bill}
"""


async def _two_for_ship(conn: asyncpg.Connection) -> None:
    for n in range(2):
        await conn.execute(
            "SELECT pgmq.send('orders__ship', $1::jsonb, $2::jsonb)",
            {"n": n},
            {"run_id": f"00000000-0000-0000-0000-00000000001{n}", "step": "ship"},
        )


async def test_a_removed_step_holding_messages_is_refused_without_a_choice(
    conn: asyncpg.Connection, write: Write
) -> None:
    await apply(conn, write(orders=V1))
    await _two_for_ship(conn)
    the_plan = await plan(conn, write(orders=REMOVED))
    [drop] = [c for c in the_plan.destructive if c.subject == "queue orders__ship"]
    assert drop.depth is not None and drop.depth.messages == 2
    with pytest.raises(DestructiveChange, match="orders__ship holds 2 messages"):
        await apply(conn, write(orders=REMOVED))
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_orders__ship") == 2


async def test_to_dead_letter_moves_them_as_replayable_step_removed(
    conn: asyncpg.Connection, write: Write
) -> None:
    await apply(conn, write(orders=V1))
    await _two_for_ship(conn)
    result = await apply(conn, write(orders=REMOVED), removed_steps="dead_letter")
    assert any("move 2 messages to orders_dlq" in line for line in result.lines())
    assert await conn.fetchval("SELECT to_regclass('pgmq.q_orders__ship')") is None
    dead = await conn.fetch("SELECT message, headers FROM pgmq.q_orders_dlq ORDER BY msg_id")
    assert [d["message"]["payload"] for d in dead] == [{"n": 0}, {"n": 1}]
    body = dead[0]["message"]
    assert body["error"]["type"] == "StepRemoved" and body["permanent"] is True
    assert (body["step"], body["queue"], body["run_id"]) == (
        "ship",
        "orders__ship",
        "00000000-0000-0000-0000-000000000010",
    )
    assert dead[0]["headers"] == {
        "run_id": body["run_id"],
        "pipeline": "orders",
        "step": "ship",
        "dead_letter": True,
    }


async def test_drain_first_keeps_the_queue_until_it_is_empty(
    conn: asyncpg.Connection, write: Write
) -> None:
    await apply(conn, write(orders=V1))
    await _two_for_ship(conn)
    await apply(conn, write(orders=REMOVED), removed_steps="drain")
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_orders__ship") == 2
    await conn.execute("DELETE FROM pgmq.q_orders__ship")  # an old worker drained it
    await apply(conn, write(orders=REMOVED), removed_steps="drain")
    assert await conn.fetchval("SELECT to_regclass('pgmq.q_orders__ship')") is None


TYPED_V1 = """
pipeline: orders
steps:
  receive: {handler: app.orders:receive, next: [bill]}
  bill:
    handler: app.orders:bill
    input: {type: object, properties: {amount: {type: number}}}
"""
TYPED_V2 = TYPED_V1.replace(
    "{amount: {type: number}}}", "{amount: {type: integer}}, required: [amount]}"
)


async def test_a_contract_that_waiting_messages_break_is_counted_and_refused(
    conn: asyncpg.Connection, write: Write
) -> None:
    await apply(conn, write(orders=TYPED_V1))
    for body in ({"amount": 1}, {"amount": 1.5}, {}):
        await conn.execute("SELECT pgmq.send('orders__bill', $1::jsonb)", body)
    the_plan = await plan(conn, write(orders=TYPED_V2))
    assert [line for line in the_plan.lines() if "[incompatible]" in line] == [
        "~ input of orders.bill: input contract changes; waiting messages are checked against "
        "it; 2 waiting messages break it [incompatible]"
    ]
    assert the_plan.summary() == "2 changes (1 incompatible)"
    with pytest.raises(IncompatibleChange, match=r"input of orders.bill: 2 waiting"):
        await apply(conn, write(orders=TYPED_V2))
    await apply(conn, write(orders=TYPED_V2), allow_incompatible=True)
    assert (await plan(conn, write(orders=TYPED_V2))).empty


async def test_a_compatible_tightening_passes(conn: asyncpg.Connection, write: Write) -> None:
    await apply(conn, write(orders=TYPED_V1))
    await conn.execute("SELECT pgmq.send('orders__bill', $1::jsonb)", {"amount": 3})
    the_plan = await plan(conn, write(orders=TYPED_V2))
    assert not the_plan.incompatible
    await apply(conn, write(orders=TYPED_V2))
