"""plan and apply against real PostgreSQL: from empty, no-op, changes, removals, drift."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orchestrator.compiler import ApplyFailed, DestructiveChange, apply, plan
from orchestrator.db import connect
from orchestrator.errors import ConfigError
from orchestrator.queue.sqlfiles import latest_version
from orchestrator.store.install import VERSION as STORE_VERSION
from tests.integration.compiler.conftest import ORDERS, ORDERS_QUEUES, Write

QUEUE_VERSION = latest_version()

EVENTS = """
pipeline: events
queues:
  partitioned: {interval: 1 day, retention: 7 days}
steps:
  ingest: {handler: app.events:ingest, next: [store]}
  store: {handler: app.events:store}
"""

WRITES = re.compile(
    r"^\s*(CREATE|ALTER|DROP|INSERT|UPDATE|DELETE|GRANT|REVOKE|TRUNCATE)\b"
    r"|pgmq\.(create|drop_queue|enable_notify_insert|disable_notify_insert)\(",
    re.I,
)


@pytest.fixture
async def empty_conn(empty_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a database without the queue layer or schema orchestrator."""
    c = await connect(empty_dsn)
    try:
        yield c
    finally:
        await c.close()


async def queues(conn: asyncpg.Connection) -> set[str]:
    return {r[0] for r in await conn.fetch("SELECT queue_name FROM pgmq.meta")}


async def send(conn: asyncpg.Connection, queue: str, count: int = 1) -> None:
    for n in range(count):
        await conn.execute("SELECT pgmq.send($1, $2::jsonb)", queue, {"n": n})


async def created_at(conn: asyncpg.Connection) -> dict[str, object]:
    rows = await conn.fetch("SELECT queue_name, created_at FROM pgmq.meta")
    return {r["queue_name"]: r["created_at"] for r in rows}


async def notify_throttle(conn: asyncpg.Connection, queue: str) -> str | None:
    """The throttle argument (ms) of the queue's notification trigger, None without one."""
    value: str | None = await conn.fetchval(
        "SELECT split_part(encode(t.tgargs, 'escape'), '\\000', 2) FROM pg_trigger t "
        "WHERE t.tgrelid = to_regclass('pgmq.' || quote_ident('q_' || $1)) "
        "AND t.tgname = 'notify_insert'",
        queue,
    )
    return value


def subjects(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith("    ")]


async def test_plan_on_an_empty_database_lists_everything_and_writes_nothing(
    empty_conn: asyncpg.Connection, write: Write
) -> None:
    result = await plan(empty_conn, write(orders=ORDERS))
    assert result.lines() == [
        f"+ queue layer: install version {QUEUE_VERSION} (schemas pgmq and pgmq_ext)",
        f"+ schema orchestrator: install version {STORE_VERSION}",
        "+ queue orders__receive: create (notify every 250ms)",
        "+ queue orders__check: create (notify every 250ms)",
        "+ queue orders__ship: create (notify every 250ms)",
        "+ queue orders__bill: create (notify every 250ms)",
        "+ queue orders__close: create (notify every 250ms)",
        "+ queue orders_dlq: create (notify every 250ms)",
        f"+ pipeline orders: record version {result.changes[-1].summary.split()[2]} "
        "(5 steps, entry receive)",
    ]
    assert not result.destructive and not result.drift
    assert "SELECT pgmq.create('orders__receive');" in result.sql()
    assert await empty_conn.fetchval("SELECT to_regnamespace('pgmq')") is None


async def test_apply_from_empty_then_reapply_changes_nothing(
    empty_conn: asyncpg.Connection, write: Write
) -> None:
    pipelines = write(orders=ORDERS)
    first = await apply(empty_conn, pipelines)
    assert first.changed and first.lines()[-1] == "Applied 9 changes."
    assert await queues(empty_conn) == ORDERS_QUEUES
    assert await notify_throttle(empty_conn, "orders__ship") == "250"
    indexes = {
        r[0]
        for r in await empty_conn.fetch(
            "SELECT indexname FROM pg_indexes "
            "WHERE schemaname = 'pgmq' AND indexname LIKE '%run_id'"
        )
    }
    assert indexes == {f"a_{q}_run_id" for q in ORDERS_QUEUES} | {"q_orders_dlq_run_id"}
    row = await empty_conn.fetchrow("SELECT * FROM orchestrator.pipelines")
    (orders,) = pipelines
    assert (row["name"], row["spec_hash"], row["entry_step"]) == (
        "orders",
        orders.spec_hash(),
        "receive",
    )
    assert row["spec"] == orders.to_json()

    before = await created_at(empty_conn)
    logged: list[str] = []
    empty_conn.add_query_logger(lambda q: logged.append(q.query))
    second = await apply(empty_conn, pipelines)
    assert second.lines() == ["No changes."]
    assert second.plan.statements == ()
    assert [q for q in logged if WRITES.search(q)] == []
    assert await created_at(empty_conn) == before
    assert (
        await empty_conn.fetchval("SELECT applied_at FROM orchestrator.pipelines")
        == (row["applied_at"])
    )
    assert (await plan(empty_conn, pipelines)).empty


async def test_add_a_step_creates_only_its_queue(conn: asyncpg.Connection, write: Write) -> None:
    await apply(conn, write(orders=ORDERS))
    await send(conn, "orders__check", 2)
    before = await created_at(conn)
    grown = ORDERS + "  audit: {handler: app.orders:audit, after: [close]}\n"
    result = await plan(conn, write(orders=grown))
    assert subjects(result.lines())[0] == "+ queue orders__audit: create (notify every 250ms)"
    assert [c.subject for c in result.changes] == ["queue orders__audit", "pipeline orders"]
    assert "    steps.audit: added" in result.lines()
    assert '    steps.close.successors: [] -> ["audit"]' in result.lines()
    await apply(conn, write(orders=grown))
    assert await queues(conn) == ORDERS_QUEUES | {"orders__audit"}
    after = await created_at(conn)
    assert {q: after[q] for q in before} == before
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_orders__check") == 2


async def test_change_partition_retention_in_place(conn: asyncpg.Connection, write: Write) -> None:
    await apply(conn, write(events=EVENTS))
    await send(conn, "events__ingest", 3)
    longer = EVENTS.replace("retention: 7 days", "retention: 14 days")
    result = await plan(conn, write(events=longer))
    assert subjects(result.lines()) == [
        "~ queue events__ingest: partitions: keep 7d -> keep 14d",
        "~ queue events__store: partitions: keep 7d -> keep 14d",
        "~ queue events_dlq: partitions: keep 7d -> keep 14d",
        f"~ pipeline events: {result.changes[-1].summary}",
    ]
    assert "    queues.partitioned.retention: 7d -> 14d" in result.lines()
    assert not result.destructive
    await apply(conn, write(events=longer))
    retention = await conn.fetchval(
        "SELECT time_retention FROM pgmq_ext.partition_config WHERE queue_name = 'events__ingest'"
    )
    assert retention.days == 14
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_events__ingest") == 3
    assert (await plan(conn, write(events=longer))).empty


async def test_archive_retention_is_recorded_without_ddl(
    conn: asyncpg.Connection, write: Write
) -> None:
    await apply(conn, write(orders=ORDERS))
    shorter = ORDERS.replace("retention: 30 days", "retention: 7 days")
    result = await plan(conn, write(orders=shorter))
    assert [c.subject for c in result.changes] == ["pipeline orders"]
    assert result.changes[0].details == ("queues.archive.retention: 30d -> 7d",)
    await apply(conn, write(orders=shorter))
    stored = await conn.fetchval("SELECT spec FROM orchestrator.pipelines")
    assert stored["queues"]["archive"]["retention"] == 7 * 86400


async def test_unlogged_and_notify_change_in_place(conn: asyncpg.Connection, write: Write) -> None:
    await apply(conn, write(orders=ORDERS))
    await send(conn, "orders__ship")
    unlogged = ORDERS.replace(
        "notify: {throttle: 250ms}", "unlogged: true\n  notify: {throttle: 1s}"
    )
    result = await plan(conn, write(orders=unlogged))
    assert subjects(result.lines())[0] == (
        "~ queue orders__receive: logged -> unlogged; notify every 250ms -> notify every 1s"
    )
    await apply(conn, write(orders=unlogged))
    persistence = await conn.fetchval(
        "SELECT relpersistence::text FROM pg_class WHERE oid = 'pgmq.q_orders__ship'::regclass"
    )
    assert persistence == "u"
    assert await conn.fetchval(
        "SELECT is_unlogged FROM pgmq.meta WHERE queue_name = 'orders__ship'"
    )
    assert await notify_throttle(conn, "orders__ship") == "1000"
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_orders__ship") == 1

    quiet = ORDERS.replace("notify: {throttle: 250ms}", "notify: false")
    await apply(conn, write(orders=quiet))
    assert await notify_throttle(conn, "orders__ship") is None
    assert await conn.fetchval("SELECT to_regclass('pgmq_ext.q_orders__ship_notify')") is None
    assert (await plan(conn, write(orders=quiet))).empty


async def test_remove_an_empty_step_drops_its_queue(conn: asyncpg.Connection, write: Write) -> None:
    await apply(conn, write(orders=ORDERS))
    smaller = ORDERS.replace("  close: {handler: app.orders:close, after: [ship, bill]}\n", "")
    result = await plan(conn, write(orders=smaller))
    assert subjects(result.lines())[0] == (
        "- queue orders__close: drop (step close is no longer in pipeline orders)"
    )
    assert not result.destructive
    await apply(conn, write(orders=smaller))
    assert await queues(conn) == ORDERS_QUEUES - {"orders__close"}


async def test_remove_a_step_holding_messages_is_refused_unless_allowed(
    conn: asyncpg.Connection, write: Write
) -> None:
    (orders,) = write(orders=ORDERS)
    await apply(conn, [orders])
    await send(conn, "orders__close", 2)
    await conn.execute("SELECT pgmq.archive('orders__close', 1)")
    smaller = ORDERS.replace("  close: {handler: app.orders:close, after: [ship, bill]}\n", "")
    result = await plan(conn, write(orders=smaller))
    (drop,) = result.destructive
    assert drop.describe()[0] == (
        "- queue orders__close: drop (step close is no longer in pipeline orders); "
        "holds 1 message and 1 archived [destructive]"
    )
    with pytest.raises(DestructiveChange, match=r"queue orders__close holds 1 message and 1"):
        await apply(conn, write(orders=smaller))
    assert "orders__close" in await queues(conn)
    assert await conn.fetchval("SELECT spec_hash FROM orchestrator.pipelines") == (
        orders.spec_hash()
    )
    with pytest.raises(DestructiveChange):
        await apply(conn, write(orders=smaller), allow_destroy=["queue orders__bill"])
    done = await apply(conn, write(orders=smaller), allow_destroy=["queue orders__close"])
    assert done.changed
    assert "orders__close" not in await queues(conn)


async def test_join_state_of_a_removed_join_is_deleted_and_open_runs_protect_it(
    conn: asyncpg.Connection, write: Write
) -> None:
    await apply(conn, write(orders=ORDERS))
    await conn.execute(
        "INSERT INTO orchestrator.joins (pipeline, step, run_id, expected) "
        "VALUES ('orders', 'close', gen_random_uuid(), '{ship,bill}')"
    )
    no_join = ORDERS.replace("after: [ship, bill]", "after: [ship]")
    result = await plan(conn, write(orders=no_join))
    (joins,) = [c for c in result.changes if c.kind == "joins"]
    assert joins.describe()[0] == (
        "- join state orders.close: delete 1 row: step close is no longer a join; "
        "1 run waiting at a join [destructive]"
    )
    with pytest.raises(DestructiveChange, match="1 run waiting at a join"):
        await apply(conn, write(orders=no_join))
    await apply(conn, write(orders=no_join), allow_destroy=True)
    assert await conn.fetchval("SELECT count(*) FROM orchestrator.joins") == 0


async def test_removed_pipeline_is_forgotten(conn: asyncpg.Connection, write: Write) -> None:
    await apply(conn, write(orders=ORDERS, events=EVENTS))
    await conn.execute(
        "INSERT INTO orchestrator.schedules (pipeline, name, cron) VALUES ('events', 'x', '@daily')"
    )
    result = await plan(conn, write(orders=ORDERS))
    assert subjects(result.lines()) == [
        "- queue events__ingest: drop (pipeline events is gone)",
        "- queue events__store: drop (pipeline events is gone)",
        "- queue events_dlq: drop (pipeline events is gone)",
        "- pipeline events: forget (no pipeline file defines it): its record, join state and "
        "schedules",
    ]
    await apply(conn, write(orders=ORDERS))
    assert await queues(conn) == ORDERS_QUEUES
    assert await conn.fetchval("SELECT array_agg(name) FROM orchestrator.pipelines") == ["orders"]
    assert await conn.fetchval("SELECT count(*) FROM orchestrator.schedules") == 0


async def test_other_queues_are_left_alone(conn: asyncpg.Connection, write: Write) -> None:
    await conn.execute("SELECT pgmq.create('scratch')")
    await send(conn, "scratch")
    await apply(conn, write(orders=ORDERS))
    assert (await plan(conn, write(orders=ORDERS))).empty
    assert "scratch" in await queues(conn)


async def test_converting_a_queue_with_messages_is_refused(
    conn: asyncpg.Connection, write: Write
) -> None:
    await apply(conn, write(orders=ORDERS))
    await send(conn, "orders__receive")
    partitioned = ORDERS.replace("archive:", "partitioned: {interval: 1 day}\n  archive:")
    result = await plan(conn, write(orders=partitioned))
    (convert,) = result.destructive
    assert convert.describe()[0] == (
        "~ queue orders__receive: convert: not partitioned -> partitioned by 1d (drop and "
        "create again); holds 1 message [destructive]"
    )
    with pytest.raises(DestructiveChange, match="queue orders__receive holds 1 message"):
        await apply(conn, write(orders=partitioned))
    await conn.execute("SELECT pgmq.purge_queue('orders__receive')")
    await apply(conn, write(orders=partitioned))
    assert await conn.fetchval("SELECT count(*) FROM pgmq_ext.partition_config") == 6
    assert (await plan(conn, write(orders=partitioned))).empty


async def test_drift_after_a_manual_drop_queue(conn: asyncpg.Connection, write: Write) -> None:
    pipelines = write(orders=ORDERS)
    await apply(conn, pipelines)
    await conn.execute("SELECT pgmq.drop_queue('orders__ship')")
    result = await plan(conn, pipelines)
    assert result.lines() == [
        "+ queue orders__ship: create again: it is missing (changed outside orchestrator "
        "apply); notify every 250ms [drift]"
    ]
    assert len(result.drift) == 1
    await apply(conn, pipelines)
    assert "orders__ship" in await queues(conn)
    assert (await plan(conn, pipelines)).empty


async def test_drift_after_a_dropped_run_id_index(conn: asyncpg.Connection, write: Write) -> None:
    pipelines = write(orders=ORDERS)
    await apply(conn, pipelines)
    await conn.execute('DROP INDEX pgmq."q_orders_dlq_run_id"')
    await conn.execute('DROP INDEX pgmq."a_orders__bill_run_id"')
    result = await plan(conn, pipelines)
    assert result.lines() == [
        "+ queue orders__bill: index the archive on headers->>'run_id' (index missing: "
        "changed outside orchestrator apply) [drift]",
        "+ queue orders_dlq: index the queue table on headers->>'run_id' (index missing: "
        "changed outside orchestrator apply) [drift]",
    ]
    await apply(conn, pipelines)
    assert (await plan(conn, pipelines)).empty


async def test_drift_after_manual_storage_changes(conn: asyncpg.Connection, write: Write) -> None:
    pipelines = write(orders=ORDERS)
    await apply(conn, pipelines)
    await conn.execute("SELECT pgmq.disable_notify_insert('orders__check')")
    await conn.execute("ALTER TABLE pgmq.q_orders__bill SET UNLOGGED")
    await conn.execute("DROP SEQUENCE pgmq_ext.q_orders__ship_notify")
    result = await plan(conn, pipelines)
    assert result.lines() == [
        "~ queue orders__check: no notifications -> notify every 250ms (changed outside "
        "orchestrator apply) [drift]",
        "~ queue orders__ship: broken notifications -> notify every 250ms (changed outside "
        "orchestrator apply) [drift]",
        "~ queue orders__bill: unlogged -> logged (changed outside orchestrator apply) [drift]",
    ]
    await apply(conn, pipelines)
    assert (await plan(conn, pipelines)).empty
    await send(conn, "orders__ship")


async def test_storage_the_queue_layer_cannot_provide_is_a_config_error(
    conn: asyncpg.Connection, write: Write
) -> None:
    both = EVENTS.replace("queues:", "queues:\n  unlogged: true")
    with pytest.raises(ConfigError, match=r"partitioned queues cannot be unlogged"):
        await plan(conn, write(events=both))


async def test_a_failing_statement_rolls_back_everything(
    empty_conn: asyncpg.Connection, write: Write
) -> None:
    pipelines = write(orders=ORDERS)
    await apply(empty_conn, write(orders=ORDERS.replace("orders", "first")))
    await empty_conn.execute("CREATE TABLE pgmq.a_orders__ship (x int)")
    with pytest.raises(ApplyFailed, match=r"^applying queue orders__ship failed: cannot create"):
        await apply(empty_conn, pipelines)
    assert not any(q.startswith("orders") for q in await queues(empty_conn))
    names = await empty_conn.fetchval("SELECT array_agg(name) FROM orchestrator.pipelines")
    assert names == ["first"]


async def fifo_indexed(conn: asyncpg.Connection) -> set[str]:
    """Queues whose table carries the queue layer's FIFO group index."""
    rows = await conn.fetch(
        "SELECT m.queue_name FROM pgmq.meta m"
        " WHERE to_regclass('pgmq.' || quote_ident(pgmq_ext.group_index_name(m.queue_name)))"
        " IS NOT NULL"
    )
    return {r[0] for r in rows}


GROUPED_SHIP = "  ship: {handler: app.orders:ship, group_by: customer.id}"


async def test_group_by_gets_the_fifo_index_and_loses_it_with_the_key(
    conn: asyncpg.Connection, write: Write
) -> None:
    plain = write(orders=ORDERS)
    await apply(conn, plain)
    grouped = write(orders=ORDERS.replace("  ship: {handler: app.orders:ship}", GROUPED_SHIP))
    result = await plan(conn, grouped)
    assert subjects(result.lines()) == [
        "+ queue orders__ship: FIFO group index for group_by customer.id",
        "~ pipeline orders: " + result.changes[-1].summary,
    ]
    assert result.changes[0].statements == ("SELECT pgmq.create_fifo_index('orders__ship');",)
    await apply(conn, grouped)
    assert await fifo_indexed(conn) == {"orders__ship"}
    assert (await plan(conn, grouped)).empty
    # a grouped read of the step now probes the index (no aggregate over the table)
    await conn.execute("SET enable_seqscan = off")
    explained = "\n".join(
        r[0]
        for r in await conn.fetch(
            "EXPLAIN SELECT 1 FROM pgmq.q_orders__ship q"
            " WHERE COALESCE(q.headers ->> 'x-pgmq-group', '_default_fifo_group') = 'c1'"
            " ORDER BY msg_id LIMIT 1"
        )
    )
    await conn.execute("RESET enable_seqscan")
    assert "q_orders__ship_group_idx" in explained

    await conn.execute('DROP INDEX pgmq."q_orders__ship_group_idx"')
    drift = await plan(conn, grouped)
    assert drift.lines() == [
        "+ queue orders__ship: FIFO group index for group_by customer.id (index missing: "
        "changed outside orchestrator apply) [drift]"
    ]
    await apply(conn, grouped)
    assert await fifo_indexed(conn) == {"orders__ship"}

    result = await plan(conn, plain)
    assert subjects(result.lines())[0] == (
        "- queue orders__ship: drop the FIFO group index (group_by customer.id removed)"
    )
    assert result.changes[0].statements == (
        'DROP INDEX IF EXISTS pgmq."q_orders__ship_group_idx";',
    )
    await apply(conn, plain)
    assert await fifo_indexed(conn) == set()
    assert (await plan(conn, plain)).empty


async def test_a_new_grouped_step_is_created_with_its_fifo_index(
    conn: asyncpg.Connection, write: Write
) -> None:
    events = EVENTS.replace(
        "store: {handler: app.events:store}", "store: {handler: app.events:store, group_by: device}"
    )
    pipelines = write(events=events)
    result = await plan(conn, pipelines)
    assert (
        "+ queue events__store: create (partitioned by 1d, keep 7d; notify every 10ms; "
        "FIFO group index for group_by device)"
    ) in result.lines()
    await apply(conn, pipelines)
    assert await fifo_indexed(conn) == {"events__store"}
    assert (await plan(conn, pipelines)).empty


async def test_a_fifo_index_made_by_hand_on_an_ungrouped_queue_is_left_alone(
    conn: asyncpg.Connection, write: Write
) -> None:
    pipelines = write(orders=ORDERS)
    await apply(conn, pipelines)
    await conn.execute("SELECT pgmq.create_fifo_index('orders__bill')")
    assert (await plan(conn, pipelines)).empty
