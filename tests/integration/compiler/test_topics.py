"""plan and apply of `subscribe`: topic bindings made, removed, repaired, and left alone."""

from __future__ import annotations

import asyncpg

from orchestrator.compiler import apply, plan
from tests.integration.compiler.conftest import ORDERS, Write

INVOICES = """
pipeline: invoices
subscribe: [orders.*, orders.#]
steps:
  start: {handler: app.invoices:start, next: [bill]}
  bill: {handler: app.invoices:bill}
"""

PUBLISHING_ORDERS = ORDERS.replace(
    "receive: {handler: app.orders:receive,",
    "receive: {handler: app.orders:receive, publish: orders.received,",
)


async def bindings(conn: asyncpg.Connection) -> set[tuple[str, str]]:
    rows = await conn.fetch("SELECT pattern, queue_name FROM pgmq.topic_bindings")
    return {(r[0], r[1]) for r in rows}


def _topic_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith(("+ topic", "- topic"))]


async def test_subscribe_binds_the_entry_queue_and_plans_nothing_more(
    conn: asyncpg.Connection, write: Write
) -> None:
    pipelines = write(orders=PUBLISHING_ORDERS, invoices=INVOICES)
    result = await plan(conn, pipelines)
    assert _topic_lines(result.lines()) == [
        "+ topic orders.* -> queue invoices__start: bind (pipeline invoices subscribes to it)",
        "+ topic orders.# -> queue invoices__start: bind (pipeline invoices subscribes to it)",
    ]
    [first] = [c for c in result.changes if c.subject == "topic orders.* -> queue invoices__start"]
    assert first.statements == ("SELECT pgmq.bind_topic('orders.*', 'invoices__start');",)
    await apply(conn, pipelines)
    assert await bindings(conn) == {
        ("orders.*", "invoices__start"),
        ("orders.#", "invoices__start"),
    }
    assert (await plan(conn, pipelines)).empty


async def test_a_binding_removed_by_hand_is_drift_and_one_made_by_hand_is_left_alone(
    conn: asyncpg.Connection, write: Write
) -> None:
    pipelines = write(orders=ORDERS, invoices=INVOICES)
    await apply(conn, pipelines)
    await conn.execute("SELECT pgmq.unbind_topic('orders.#', 'invoices__start')")
    await conn.execute("SELECT pgmq.bind_topic('#', 'invoices__start')")  # by hand, same queue
    await conn.execute("SELECT pgmq.bind_topic('orders.*', 'orders__check')")  # another queue
    drift = await plan(conn, pipelines)
    assert drift.lines() == [
        "+ topic orders.# -> queue invoices__start: bind again: it is missing "
        "(changed outside orchestrator apply) [drift]"
    ]
    assert drift.summary() == "1 change (1 drift)"
    await apply(conn, pipelines)
    assert await bindings(conn) == {
        ("orders.*", "invoices__start"),
        ("orders.#", "invoices__start"),
        ("#", "invoices__start"),
        ("orders.*", "orders__check"),
    }
    assert (await plan(conn, pipelines)).empty


async def test_only_bindings_the_pipeline_declared_are_removed(
    conn: asyncpg.Connection, write: Write
) -> None:
    await apply(conn, write(orders=ORDERS, invoices=INVOICES))
    await conn.execute("SELECT pgmq.bind_topic('#', 'invoices__start')")
    fewer = write(orders=ORDERS, invoices=INVOICES.replace("[orders.*, orders.#]", "orders.*"))
    result = await plan(conn, fewer)
    assert _topic_lines(result.lines()) == [
        "- topic orders.# -> queue invoices__start: unbind (pipeline invoices no longer "
        "subscribes to it)"
    ]
    assert result.changes[0].statements == (
        "SELECT pgmq.unbind_topic('orders.#', 'invoices__start');",
    )
    await apply(conn, fewer)
    assert await bindings(conn) == {("orders.*", "invoices__start"), ("#", "invoices__start")}


async def test_removing_the_pipeline_removes_its_bindings(
    conn: asyncpg.Connection, write: Write
) -> None:
    await apply(conn, write(orders=ORDERS, invoices=INVOICES))
    await conn.execute("SELECT pgmq.bind_topic('orders.*', 'orders__check')")
    alone = write(orders=ORDERS)
    result = await plan(conn, alone)
    assert _topic_lines(result.lines()) == [
        "- topic orders.# -> queue invoices__start: unbind (pipeline invoices is gone)",
        "- topic orders.* -> queue invoices__start: unbind (pipeline invoices is gone)",
    ]
    await apply(conn, alone)
    assert await bindings(conn) == {("orders.*", "orders__check")}


async def test_a_renamed_entry_step_moves_its_bindings(
    conn: asyncpg.Connection, write: Write
) -> None:
    await apply(conn, write(invoices=INVOICES))
    renamed = INVOICES.replace(
        "start: {handler: app.invoices:start,",
        "begin: {handler: app.invoices:start, renamed_from: start,",
    )
    result = await plan(conn, write(invoices=renamed))
    assert _topic_lines(result.lines()) == [
        "- topic orders.# -> queue invoices__start: unbind (the entry queue of pipeline "
        "invoices is now invoices__begin)",
        "- topic orders.* -> queue invoices__start: unbind (the entry queue of pipeline "
        "invoices is now invoices__begin)",
        "+ topic orders.* -> queue invoices__begin: bind (pipeline invoices subscribes to it)",
        "+ topic orders.# -> queue invoices__begin: bind (pipeline invoices subscribes to it)",
    ]
    await apply(conn, write(invoices=renamed))
    assert await bindings(conn) == {
        ("orders.*", "invoices__begin"),
        ("orders.#", "invoices__begin"),
    }
