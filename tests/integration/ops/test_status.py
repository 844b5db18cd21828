"""`collect_status` against messages in every state the runtime leaves them in."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from orchestrator.errors import NotFound, SchemaMissing
from orchestrator.ops.status import collect_status
from orchestrator.spec import Pipeline
from tests.integration.ops import support


def step(report, pipeline: str, name: str):  # type: ignore[no-untyped-def]
    found = next(p for p in report.pipelines if p.name == pipeline)
    return next(s for s in found.steps if s.step == name)


async def test_counts_every_state(conn: asyncpg.Connection, orders: Pipeline) -> None:
    run = support.new_run()
    visible = await support.send(conn, orders, "fetch", run)
    in_flight = await support.send(conn, orders, "fetch", run, {"n": 2})
    retrying = await support.send(conn, orders, "fetch", run, {"n": 3})
    await support.send(conn, orders, "fetch", run, {"n": 4}, delay=600)
    assert await support.read(conn, orders.queue_name("fetch"), only={"n": 2}) == [in_flight]
    assert await support.read(conn, orders.queue_name("fetch"), only={"n": 3}) == [retrying]
    await support.fail(conn, orders.queue_name("fetch"), retrying, attempt=1)
    assert visible

    report = await collect_status(conn)

    fetch = step(report, "orders", "fetch")
    numbers = fetch.numbers
    assert numbers is not None
    assert (numbers.waiting, numbers.visible, numbers.in_flight) == (4, 1, 1)
    assert (numbers.retrying, numbers.delayed) == (1, 1)
    assert numbers.oldest_age is not None and 0 <= numbers.oldest_age < 60
    assert fetch.failures == 1
    assert fetch.handed_off == 0
    assert fetch.attention == ()
    assert numbers.table_bytes > 0
    label = step(report, "orders", "label")
    assert label.numbers is not None and label.numbers.waiting == 0
    assert [s.step for s in report.pipelines[0].steps] == ["fetch", "label", "sync", "report"]


async def test_hand_offs_failures_and_dead_letters_in_the_window(
    conn: asyncpg.Connection, orders: Pipeline
) -> None:
    for _ in range(3):
        await support.complete_run(conn, orders, support.new_run())
    run = support.new_run()
    await support.dead_letter(conn, orders, "sync", run)
    await support.dead_letter(conn, orders, "sync", run, msg_id=2)
    await support.dead_letter(conn, orders, "gone", run, msg_id=3)
    bare = {"step": "label", "run_id": run, "payload": {}, "error": {"type": "E"}}
    await conn.execute("SELECT pgmq.send('orders_dlq', $1::jsonb)", bare)

    report = await collect_status(conn)

    sync = step(report, "orders", "sync")
    assert sync.handed_off == 3
    assert sync.dead_letters == 2
    assert sync.failures == 6  # three failed attempts recorded by each dead letter
    assert "dead letters" in sync.attention
    label = step(report, "orders", "label")
    assert (label.dead_letters, label.failures) == (1, 1)  # no attempt history: counts once
    pipeline = report.pipelines[0]
    assert pipeline.dead_letters == 4
    assert pipeline.dead_letter_steps == {"sync": 2, "gone": 1, "label": 1}
    assert step(report, "orders", "fetch").handed_off == 3


async def test_failures_of_archived_messages_count_within_the_window(
    conn: asyncpg.Connection, orders: Pipeline
) -> None:
    queue = orders.queue_name("label")
    run = support.new_run()
    old = support.error(1, at=datetime(2000, 1, 1, tzinfo=UTC))
    msg = await support.send(conn, orders, "label", run, errors=[old, support.error(2)])
    await support.read(conn, queue)
    await support.archive(conn, queue, msg)

    label = step(await collect_status(conn), "orders", "label")

    assert label.failures == 1  # the recent error counts, the one from 2000 does not
    assert label.handed_off == 1


async def test_archive_disabled_reports_no_hand_offs(
    conn: asyncpg.Connection, ledger: Pipeline
) -> None:
    report = await collect_status(conn, ["ledger"])
    book = step(report, "ledger", "book")
    assert book.handed_off is None
    assert report.pipelines[0].dead_letter_queue == "ledger_dead"
    assert report.to_json()["pipelines"][0]["steps"][0]["handed_off"] is None


async def test_old_messages_and_dead_tuples_need_attention(
    conn: asyncpg.Connection, orders: Pipeline
) -> None:
    queue = orders.queue_name("fetch")
    run = support.new_run()
    for n in range(120):  # enough dead tuples to mean something (DEAD_TUPLE_MIN)
        await support.send(conn, orders, "fetch", run, {"n": n})
    await conn.execute(
        f"UPDATE pgmq.q_{queue} SET enqueued_at = enqueued_at - interval '1 hour' WHERE msg_id = 1"
    )
    await conn.execute(f"DELETE FROM pgmq.q_{queue} WHERE msg_id > 20")
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT 1")  # the flush happens when the session goes idle

    fetch = step(await collect_status(conn), "orders", "fetch")

    assert fetch.numbers is not None
    assert fetch.numbers.oldest_age is not None and fetch.numbers.oldest_age >= 3600
    assert fetch.numbers.dead_tuples >= 100
    share = fetch.numbers.dead_tuple_share
    assert share is not None and share > 0.2
    assert set(fetch.attention) >= {"old messages", "dead tuples"}


async def test_missing_queue_is_reported_not_fatal(
    conn: asyncpg.Connection, orders: Pipeline
) -> None:
    await conn.execute("SELECT pgmq.drop_queue($1)", orders.queue_name("label"))
    report = await collect_status(conn)
    label = step(report, "orders", "label")
    assert label.numbers is None
    assert label.attention == ("missing",)


async def test_partitioned_queue_sizes_sum_partitions(conn: asyncpg.Connection) -> None:
    stream = await support.provision(conn, support.pipeline(support.PARTITIONED))
    run = support.new_run()
    await support.send(conn, stream, "ingest", run)
    ingest = step(await collect_status(conn), "stream", "ingest")
    assert ingest.numbers is not None
    assert ingest.numbers.waiting == 1
    assert ingest.numbers.table_bytes > 0
    assert ingest.numbers.archive_bytes > 0


async def test_changed_since_apply(conn: asyncpg.Connection, orders: Pipeline) -> None:
    same = await collect_status(conn, local_hashes={"orders": orders.spec_hash()})
    changed = await collect_status(conn, local_hashes={"orders": "0" * 64})
    assert same.pipelines[0].changed is False
    assert changed.pipelines[0].changed is True


async def test_next_ticks_are_shown(conn: asyncpg.Connection, orders: Pipeline) -> None:
    report = await collect_status(conn)
    ticks = {t.schedule: t for t in report.pipelines[0].schedules}
    assert set(ticks) == {"every_five", "daily"}
    five = ticks["every_five"]
    assert five.next_tick > report.measured_at
    assert five.next_tick.minute % 5 == 0
    assert not five.recorded


async def test_unknown_pipeline(conn: asyncpg.Connection, orders: Pipeline) -> None:
    with pytest.raises(NotFound, match=r"unknown pipeline 'order' \(did you mean 'orders'\?\)"):
        await collect_status(conn, ["order"])


async def test_no_pipelines_yet(conn: asyncpg.Connection) -> None:
    assert (await collect_status(conn)).pipelines == ()


async def test_database_without_schema(empty_dsn: str) -> None:
    from orchestrator.db import connect

    bare = await connect(empty_dsn)
    try:
        with pytest.raises(SchemaMissing, match="orchestrator apply"):
            await collect_status(bare)
    finally:
        await bare.close()
