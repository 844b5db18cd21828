"""The dashboard's and the CLI's queries read bounded index ranges, never a whole archive:
EXPLAIN of the exact statements the read models run, and every statement each page and command
runs (nested ones too) as auto_explain reports it, over archives large enough for the planner
to care."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from bench import archive_bench
from orchestrator.compiler import apply
from orchestrator.spec import Pipeline, parse_pipeline

RUNS = 40_000


async def plan(conn: asyncpg.Connection, sql: str, *args: Any) -> dict[str, Any]:
    found = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    document = json.loads(found) if isinstance(found, str) else found
    return dict(document[0]["Plan"])


def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in nodes(child))]


def scans_of(root: dict[str, Any], table: str) -> set[str]:
    return {n["Node Type"] for n in nodes(root) if n.get("Relation Name") == table}


async def test_dashboard_queries_use_indexes(conn: asyncpg.Connection, orders: Pipeline) -> None:
    for step in ("fetch", "sync", "label"):
        await archive_bench.fill_step(conn, step, RUNS)
        await conn.execute(f"ANALYZE pgmq.a_orders__{step}")
    window = await conn.fetchval("SELECT orchestrator.ops_runs_window_sql('orders__fetch')")
    newest = await plan(conn, window, RUNS - 20_000, RUNS + 1, None, 26)
    assert scans_of(newest, "a_orders__fetch") == {"Index Scan"}, newest
    rare = await plan(conn, window, RUNS - 20_000, RUNS + 1, {"customer_id": 4242}, 26)
    assert "Seq Scan" not in scans_of(rare, "a_orders__fetch"), rare
    queues = ["orders__fetch", "orders__label", "orders__sync", "orders__report"]
    for state in ("running", "dead-lettered", "done"):
        filtered = await conn.fetchval(
            "SELECT orchestrator.ops_runs_window_sql('orders__fetch', $1, $2, 'orders_dlq')",
            state,
            queues,
        )
        found = await plan(conn, filtered, RUNS - 20_000, RUNS + 1, None, 26)
        assert "Seq Scan" not in scans_of(found, "a_orders__fetch"), (state, found)

    activity = await conn.fetchval("SELECT orchestrator.ops_step_activity_sql('orders__sync')")
    hour = await conn.fetchval("SELECT now() - interval '1 hour'")
    found = await plan(conn, activity, hour, 60)
    assert scans_of(found, "a_orders__sync") & {"Index Scan", "Bitmap Heap Scan"}, found
    assert "Seq Scan" not in scans_of(found, "a_orders__sync")

    # trace (the run page, and a run's state) finds a run through the run-id index.
    run = await conn.fetchval("SELECT headers->>'run_id' FROM pgmq.a_orders__label LIMIT 1")
    lookup = await plan(
        conn, "SELECT * FROM pgmq.a_orders__label WHERE headers ->> 'run_id' = $1", run
    )
    assert "Seq Scan" not in scans_of(lookup, "a_orders__label"), lookup


async def test_no_page_or_command_reads_an_archive_sequentially(
    conn: asyncpg.Connection, dsn: str
) -> None:
    await apply(conn, [parse_pipeline(archive_bench.PIPELINE)])  # indexes as apply makes them
    for step in archive_bench.STEPS:
        await archive_bench.fill_step(conn, step, RUNS)
    await archive_bench.extras(conn, RUNS)
    await conn.execute("VACUUM (ANALYZE)")
    large = await archive_bench.large_archives(conn)
    assert large == {f"a_orders__{s}" for s in archive_bench.STEPS}

    models = {**archive_bench.page_models(RUNS), **archive_bench.commands(RUNS)}
    found = await archive_bench.explain_all(dsn, models)
    assert [p.name for p in found] == list(models)
    for plans in found:
        assert plans.statements() > 0, plans.name
        assert plans.archive_seq_scans(large) == [], (plans.name, plans.archive_seq_scans(large))
    archive_reads = {
        n["Node Type"]
        for p in found
        for n in p.nodes()
        if n.get("Relation Name") in large or n.get("Index Name", "").startswith("a_orders__")
    }
    assert archive_reads and archive_reads <= {
        "Index Scan",
        "Index Only Scan",
        "Bitmap Heap Scan",
        "Bitmap Index Scan",
    }, archive_reads
