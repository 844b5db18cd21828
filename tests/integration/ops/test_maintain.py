"""`maintain_all`: partition upkeep, archive retention in batches, old join state."""

from __future__ import annotations

import asyncpg

from orchestrator.ops.maintain import maintain_all
from orchestrator.spec import Pipeline
from tests.integration.ops import support


async def _archived(conn: asyncpg.Connection, queue: str) -> list[int]:
    return [r["msg_id"] for r in await conn.fetch(f"SELECT msg_id FROM pgmq.a_{queue} ORDER BY 1")]


async def test_archive_retention_deletes_only_old_rows(
    conn: asyncpg.Connection, orders: Pipeline, ledger: Pipeline
) -> None:
    runs = [await support.complete_run(conn, orders, support.new_run()) for _ in range(5)]
    fetch = orders.queue_name("fetch")
    old = [ids["fetch"] for ids in runs[:3]]
    await conn.execute(
        f"UPDATE pgmq.a_{fetch} SET archived_at = archived_at - interval '25 hours'"
        " WHERE msg_id = ANY ($1::bigint[])",
        old,
    )

    report = await maintain_all(conn, batch=2)

    assert await _archived(conn, fetch) == [ids["fetch"] for ids in runs[3:]]
    assert len(await _archived(conn, orders.queue_name("report"))) == 5
    trims = {a.queue: a for a in report.archives}
    assert set(trims) == set(orders.queue_names())  # ledger keeps no archive retention
    assert trims[fetch].deleted == 3 and trims[fetch].retention == 86400
    assert report.archived_deleted == 3
    assert report.problems == ()
    again = await maintain_all(conn)
    assert again.archived_deleted == 0


async def test_partitioned_pipelines_leave_retention_to_partitions(
    conn: asyncpg.Connection,
) -> None:
    stream = await support.provision(conn, support.pipeline(support.PARTITIONED))
    await conn.execute("UPDATE pgmq_ext.partition_config SET maintained_at = NULL")

    report = await maintain_all(conn)

    assert {(a.queue, a.note) for a in report.archives} == {
        (q, "partitioned") for q in stream.queue_names()
    }
    maintained = await conn.fetch("SELECT maintained_at FROM pgmq_ext.partition_config")
    assert len(maintained) == 2 and all(r["maintained_at"] for r in maintained)
    assert report.partitions.problems == ()
    without = await maintain_all(conn, partitions=False)
    assert without.partitions.actions == ()


async def test_old_completed_joins_are_deleted(conn: asyncpg.Connection, orders: Pipeline) -> None:
    insert = (
        "INSERT INTO orchestrator.joins (pipeline, step, run_id, arrived, expected, created_at,"
        " completed_at) VALUES ('orders', 'report', $1::uuid, '{}', '{label,sync}',"
        " now() - $2::text::interval, now() - $3::text::interval)"
    )
    old_done = support.new_run()
    await conn.execute(insert, old_done, "9 days", "8 days")
    recent_done = support.new_run()
    await conn.execute(insert, recent_done, "2 days", "1 day")
    old_open = support.new_run()
    await conn.execute(
        "INSERT INTO orchestrator.joins (pipeline, step, run_id, expected, created_at)"
        " VALUES ('orders', 'report', $1::uuid, '{label,sync}', now() - interval '30 days')",
        old_open,
    )

    report = await maintain_all(conn, batch=1)

    assert report.joins_deleted == 1
    left = {str(r["run_id"]) for r in await conn.fetch("SELECT run_id FROM orchestrator.joins")}
    assert left == {recent_done, old_open}


async def test_report_as_json(conn: asyncpg.Connection, orders: Pipeline) -> None:
    data = (await maintain_all(conn)).to_json()
    assert set(data) == {
        "partitions",
        "archives",
        "joins_deleted",
        "problems",
        "vacuum_held_back_by",
    }
    assert {a["queue"] for a in data["archives"]} == set(orders.queue_names())
