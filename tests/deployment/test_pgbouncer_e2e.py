"""The whole life of a pipeline through PgBouncer in transaction mode, as a user runs it:
`apply`, `send --file`, `run --drain --workers 2`, `status`, `dlq replay`, `trace`, with and
without `--listen-dsn`. A 3-step pipeline with a join (``total`` waits for ``fetch`` and
``price``) and a retrying step (``price`` fails its first attempt for some runs). Every run
passes every step exactly once and nothing is left behind: no message, no open join, no
upkeep lease, no session advisory lock."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from tests.deployment.support import ok
from tests.integration.process.support import EFFECTS_TABLE, Project
from tests.support.pgbouncer import PgBouncer, pgbouncer_state

PIPELINE = """\
pipeline: orders
defaults:
  visibility_timeout: 10s
  timeout: 5s
  retry: {max_attempts: 3, backoff: constant, initial: 100ms, max: 1s, jitter: false}
steps:
  fetch:
    handler: handlers.flow:fetch
    next: [price]
  price:
    handler: handlers.flow:price
    concurrency: 2
    batch_size: 4
  total:
    handler: handlers.flow:total
    after: [fetch, price]
"""

HANDLERS = '''\
"""Handlers of the pooled pipeline: each records its attempt through ctx.conn."""

import os

from orchestrator import Fail


async def _record(ctx):
    await ctx.conn.execute(
        "INSERT INTO effects (run_id, step, msg_id, attempt, pid) VALUES ($1, $2, $3, $4, $5)",
        str(ctx.run_id), ctx.step, ctx.message_id, ctx.attempt, os.getpid(),
    )


async def fetch(payload, ctx):
    await _record(ctx)
    return payload


async def price(payload, ctx):
    await _record(ctx)
    if payload.get("flaky") and ctx.attempt == 1:
        raise RuntimeError("the price service timed out")
    if payload.get("doom") and not await ctx.conn.fetchval("SELECT count(*) FROM fixed"):
        raise Fail("no price for this article")
    return {"price": payload["n"] * 2}


async def total(payload, ctx):
    await _record(ctx)
    return {"total": payload["fetch"]["n"] + payload["price"]["price"]}
'''

RUNS = 24
FLAKY = {3, 7, 11, 15}
DOOMED = {5, 17}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = Project(tmp_path)
    project.pipelines_dir.mkdir()
    project.write_pipeline("orders", PIPELINE)
    (tmp_path / "handlers").mkdir()
    (tmp_path / "handlers" / "__init__.py").write_text("")
    (tmp_path / "handlers" / "flow.py").write_text(HANDLERS)
    lines = [
        json.dumps({"n": n, **({"flaky": True} if n in FLAKY else {}), "doom": n in DOOMED})
        for n in range(RUNS)
    ]
    (tmp_path / "runs.jsonl").write_text("\n".join(lines) + "\n")
    return project


@pytest.mark.parametrize("wakeups", ["polling", "listen-dsn"])
async def test_a_pipeline_runs_through_pgbouncer_from_apply_to_trace(
    project: Project,
    pgbouncer: PgBouncer,
    pooled_dsn: str,
    dsn: str,
    conn: asyncpg.Connection,
    wakeups: str,
) -> None:
    # Without --listen-dsn the first connection finds the pooler; with it, the URL says so.
    url = pooled_dsn if wakeups == "polling" else f"{pooled_dsn}?pool_mode=transaction"
    listen = ["--listen-dsn", dsn] if wakeups == "listen-dsn" else []
    ok(project.cli("apply", "--dsn", url))
    await conn.execute(EFFECTS_TABLE)
    await conn.execute("CREATE TABLE fixed (at timestamptz)")

    run_ids = ok(project.cli("send", "orders", "--file", "runs.jsonl", "--dsn", url)).split()
    assert len(run_ids) == RUNS

    worker = project.start(
        "run", "--drain", "--workers", "2", "--log-format=text", "--dsn", url, *listen
    )
    code = worker.wait(240)
    log = worker.output()
    assert code == 0, log[-4000:] + pgbouncer_state(pgbouncer)
    # Handlers' failures are logged with their tracebacks; nothing else may fail.
    assert "stopping the worker" not in log and "connection down" not in log, log[-4000:]
    polling = log.count("where LISTEN cannot work: polling every 0.25s")
    assert polling == (2 if wakeups == "polling" else 0), log[-4000:]  # once per worker

    await _check_exactly_once(conn, run_ids, dead={run_ids[n] for n in DOOMED})
    retried = await conn.fetchval(
        "SELECT count(DISTINCT run_id) FROM effects WHERE step = 'price' AND attempt = 2"
    )
    assert retried == len(FLAKY)

    status = json.loads(ok(project.cli("status", "orders", "--json", "--dsn", url)))
    assert "orders" in json.dumps(status) and '"dead_letters": 2' in json.dumps(status)

    # The doomed runs are fixed and replayed from the dead-letter queue, through the pooler.
    await conn.execute("INSERT INTO fixed VALUES (now())")
    replay = ok(project.cli("dlq", "replay", "orders", "--all", "--dsn", url))
    assert replay.startswith("replayed 2 dead letters of orders (price: 2)"), replay
    done = project.cli("run", "--drain", "--workers", "2", "--dsn", url, *listen, timeout=240)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:] + pgbouncer_state(pgbouncer)
    await _check_exactly_once(conn, run_ids, dead=set())

    trace = json.loads(ok(project.cli("trace", run_ids[5], "--json", "--dsn", url)))
    text = json.dumps(trace)
    assert all(step in text for step in ("fetch", "price", "total")), text

    assert await conn.fetchval("SELECT count(*) FROM orchestrator.leases") == 0
    assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


async def _check_exactly_once(conn: asyncpg.Connection, run_ids: list[str], dead: set[str]) -> None:
    """Each run's committed effects: every step once (fetch and price only for a dead run,
    whose price attempt rolled back); queues empty; joins of finished runs closed."""
    rows = await conn.fetch("SELECT run_id, step, count(*) AS n FROM effects GROUP BY run_id, step")
    seen = {(r["run_id"], r["step"]): r["n"] for r in rows}
    expected = {
        (run, step)
        for run in run_ids
        for step in (("fetch",) if run in dead else ("fetch", "price", "total"))
    }
    assert {k: n for k, n in seen.items() if n != 1} == {}, "a step ran twice"
    assert set(seen) == expected
    left = await conn.fetchval(
        "SELECT sum(m.queue_length) FROM unnest($1::text[]) q, LATERAL pgmq.metrics(q) m",
        ["orders__fetch", "orders__price", "orders__total"],
    )
    assert left == 0
    assert await conn.fetchval("SELECT queue_length FROM pgmq.metrics('orders_dlq')") == len(dead)
    open_joins = await conn.fetchval(
        "SELECT count(*) FROM orchestrator.joins WHERE completed_at IS NULL"
    )
    assert open_joins == len(dead)
    totals = await conn.fetch("SELECT message FROM pgmq.a_orders__total")
    assert len(totals) == len(run_ids) - len(dead)
