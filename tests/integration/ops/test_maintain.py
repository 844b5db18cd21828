"""`maintain_all`: partition upkeep, archive retention in batches, old join state."""

from __future__ import annotations

import asyncpg

from orchestrator.cli.views import maintain_text
from orchestrator.ops.maintain import maintain_all
from orchestrator.spec import Pipeline
from tests.integration.ops import support

FORK = """
pipeline: fork
joins: {incomplete_retention: 2 days}
steps:
  split:
    handler: fork.steps:split
    next: [left, right]
  left:
    handler: fork.steps:left
  right:
    handler: fork.steps:right
  merge:
    handler: fork.steps:merge
    after: [left, right]
"""


async def _join_row(
    conn: asyncpg.Connection,
    pipeline: str,
    step: str,
    created: str,
    completed: str | None = None,
) -> str:
    """A join row created `created` ago (an interval), completed `completed` ago or not."""
    run = support.new_run()
    await conn.execute(
        "INSERT INTO orchestrator.joins (pipeline, step, run_id, expected, created_at,"
        " completed_at) VALUES ($1, $2, $3::uuid, '{a,b}', now() - $4::text::interval,"
        " now() - $5::text::interval)",
        pipeline,
        step,
        run,
        created,
        completed,
    )
    return run


async def _join_runs(conn: asyncpg.Connection) -> set[str]:
    return {str(r["run_id"]) for r in await conn.fetch("SELECT run_id FROM orchestrator.joins")}


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
        " VALUES ('orders', 'report', $1::uuid, '{label,sync}', now() - interval '20 days')",
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
        "incomplete_joins",
        "incomplete_joins_deleted",
        "problems",
        "vacuum_held_back_by",
    }
    assert {a["queue"] for a in data["archives"]} == set(orders.queue_names())


async def test_incomplete_joins_past_their_pipelines_retention_are_deleted(
    conn: asyncpg.Connection, orders: Pipeline
) -> None:
    fork = await support.provision(conn, support.pipeline(FORK))
    assert fork.join_settings.incomplete_retention == 2 * 86400
    # orders keeps the default of 30 days
    orders_old = await _join_row(conn, "orders", "report", "40 days")
    orders_kept = [
        await _join_row(conn, "orders", "report", "20 days"),
        await _join_row(conn, "orders", "report", "3 days"),  # past fork's retention, not its own
        await _join_row(conn, "orders", "report", "40 days", "3 days"),  # completed: 7-day rule
    ]
    fork_old = [await _join_row(conn, "fork", "merge", f"{n} days") for n in (3, 4, 5)]
    fork_kept = [
        await _join_row(conn, "fork", "merge", "1 day"),
        await _join_row(conn, "fork", "merge", "5 days", "3 days"),  # completed: 7-day rule
    ]
    stale_done = await _join_row(conn, "fork", "merge", "10 days", "8 days")

    report = await maintain_all(conn, batch=2)

    assert await _join_runs(conn) == {*orders_kept, *fork_kept}
    assert orders_old not in await _join_runs(conn)
    assert not set(fork_old) & await _join_runs(conn)
    assert report.joins_deleted == 1  # stale_done, by the completed-join rule
    assert stale_done not in await _join_runs(conn)
    trims = {t.pipeline: (t.retention, t.deleted) for t in report.incomplete_joins}
    assert trims == {"orders": (30 * 86400, 1), "fork": (2 * 86400, 3)}
    assert report.incomplete_joins_deleted == 4
    assert report.problems == ()
    text = maintain_text(report)
    assert "incomplete joins: 4 join rows past retention deleted" in text
    assert "  fork: 3 older than 2d" in text
    data = report.to_json()
    assert data["incomplete_joins_deleted"] == 4
    assert {"pipeline": "fork", "retention_seconds": 172800.0, "deleted": 3} in data[
        "incomplete_joins"
    ]
    again = await maintain_all(conn)
    assert again.incomplete_joins_deleted == 0 and again.joins_deleted == 0


async def test_an_arrival_after_retention_starts_a_new_waiting_row(
    conn: asyncpg.Connection, orders: Pipeline
) -> None:
    run = await _join_row(conn, "orders", "report", "40 days")
    await conn.execute(
        'UPDATE orchestrator.joins SET arrived = \'{"label": {"n": 1}}\','
        " expected = '{label,sync}' WHERE run_id = $1::uuid",
        run,
    )
    await maintain_all(conn)
    assert run not in await _join_runs(conn)

    # the replayed predecessor hands off: arrive() as hand_off() calls it
    completed = await conn.fetchval(
        "SELECT orchestrator.arrive('orders', 'report', 'sync', '{label,sync}', 0,"
        " ARRAY[$1::uuid], ARRAY['{\"s\": 2}'::jsonb], ARRAY[1::bigint], ARRAY['{}'::jsonb],"
        " now())",
        run,
    )

    assert completed == 0  # label's output went with the old row: the join waits again
    row = await conn.fetchrow(
        "SELECT arrived, completed_at, created_at > now() - interval '1 minute' AS fresh"
        " FROM orchestrator.joins WHERE run_id = $1::uuid",
        run,
    )
    assert row["arrived"] == {"sync": {"s": 2}}
    assert row["completed_at"] is None and row["fresh"]
    assert await conn.fetchval(f"SELECT count(*) FROM pgmq.q_{orders.queue_name('report')}") == 0
