"""`python -m bench.archive_bench [--archived N] [--reuse]`: every dashboard page and the CLI's
`trace RUN_ID`, `status` and `dlq list` over an archive of N messages (default 10 million).

Build (skipped with `--reuse`, which times the database the last run built): a scratch
database (`orchestrator_bench_archive`) with the four-step `orders` pipeline below applied by
the compiler (`compiler.apply`, as `orchestrator apply` does it); its archives filled with N
archived messages in all (N/4 runs through `fetch -> label, sync -> report`, spread over 30
days, each message with the headers the runtime writes and a realistic body), by one
set-based `INSERT ... SELECT generate_series` per chunk, two connections at once; the
archives' secondary indexes are dropped before the fill and made again after it (the
`archived_at` index of the queue layer, then the run-id indexes by a second `apply`, which
finds them missing), since building an index once is much faster than growing it row by
row. Then some waiting and retrying messages, dead letters, a paused step and a worker
heartbeat. Each phase's time and the database's size are printed.

Timing: each dashboard page through the ASGI application in process (httpx; queries and
rendering, no network) and each CLI read model through the function the CLI calls, `REPEAT`
times after one warm-up; p50 and p95 per page.

Checks: every read model behind a page or command runs once more on a connection with
`auto_explain` (ANALYZE, BUFFERS, nested statements) sending every plan to the client; a plan
node that reads an archive sequentially fails the run, and the buffers each read model touched
are printed. A sequential scan of a small table (a queue, the dead letters) is allowed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from bench.common import percentile, recreate_database, with_database

DATABASE = "orchestrator_bench_archive"
REPEAT = 20
CHUNK = 250_000
STEPS = ("fetch", "label", "sync", "report")
PARENTS = {"fetch": None, "label": "fetch", "sync": "fetch", "report": "sync"}
WAITING = 500
LIMIT_MS = 300.0

PIPELINE = """
pipeline: orders
description: fetch an order, label it and sync it, then report
queues:
  archive: {retention: 30 days}
defaults:
  retry: {max_attempts: 3}
steps:
  fetch:
    handler: shop.steps:fetch
    next: [label, sync]
  label:
    handler: shop.steps:label
  sync:
    handler: shop.steps:sync
    rate_limit: 50/s
  report:
    handler: shop.steps:report
    after: [label, sync]
"""


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def body_sql(step: str) -> str:
    """The body of step `step`'s message of run number `i` (a SQL expression)."""
    order = (
        "'order_id', i, 'customer_id', i % 50000, 'currency', 'EUR',"
        " 'total', round((i % 100000) / 100.0, 2)"
    )
    if step == "fetch":
        return (
            f"jsonb_build_object({order}, 'items', jsonb_build_array("
            "jsonb_build_object('sku', 'SKU-' || (i % 997), 'qty', 1 + i % 5),"
            "jsonb_build_object('sku', 'SKU-' || (i % 389), 'qty', 1)),"
            "'note', 'deliver between 9 and 17, ring twice')"
        )
    if step == "report":
        return (
            "jsonb_build_object('label', jsonb_build_object('order_id', i, 'label', md5(i::text)),"
            " 'sync', jsonb_build_object('order_id', i, 'synced', true, 'ledger', 'L-' || i))"
        )
    return f"jsonb_build_object({order}, 'step', '{step}', 'reference', md5(i::text || '{step}'))"


def headers_sql(step: str) -> str:
    """The headers the runtime writes on step `step`'s message of run `i` (sent at `t`)."""
    parent = PARENTS[step]
    parent_step = f"'{parent}'" if parent else "NULL"
    parent_id = "i" if parent else "NULL"
    return (
        "jsonb_build_object('run_id', md5(i::text)::uuid::text, 'pipeline', 'orders',"
        f" 'step', '{step}', 'parent_id', {parent_id}, 'parent_step', {parent_step},"
        f" 'traceparent', '00-' || md5(i::text) || '-' || left(md5(i::text || '{step}'), 16)"
        " || '-01',"
        " 'sent_at', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'),"
        " 'spec_hash', 'b5c1f0e3a0d94f0c8c7e4a3b2d1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a39')"
        " || CASE WHEN i % 100 = 0 THEN jsonb_build_object('errors', jsonb_build_array("
        "jsonb_build_object('attempt', 1, 'type', 'TimeoutError', 'message',"
        " 'upstream did not answer in 10 s', 'at', t))) ELSE '{}'::jsonb END"
    )


async def fill_step(
    conn: asyncpg.Connection,
    step: str,
    runs: int,
    *,
    days: float = 30.0,
    log: Callable[[str], None] | None = None,
) -> None:
    """`runs` archived messages of step `step` of pipeline `orders` (msg_id = run number, the
    same run id at every step), archived evenly over the last `days` days, newest last; one
    set-based statement per `CHUNK` rows."""
    spacing = days * 86400.0 / max(runs, 1)
    offset = STEPS.index(step) * 0.05
    for low in range(1, runs + 1, CHUNK):
        high = min(runs, low + CHUNK - 1)
        await conn.execute(
            f"""
            INSERT INTO pgmq.a_orders__{step}
                   (msg_id, read_ct, enqueued_at, last_read_at, archived_at, vt, message, headers)
            SELECT i, CASE WHEN i % 100 = 0 THEN 2 ELSE 1 END, t,
                   t + interval '4 ms', t + interval '35 ms', t + interval '30 s',
                   {body_sql(step)}, {headers_sql(step)}
              FROM generate_series($1::bigint, $2::bigint) AS i,
                   LATERAL (SELECT now() - make_interval(secs => ($3 - i) * $4 - $5)) AS at (t)
            """,
            low,
            high,
            runs,
            spacing,
            offset,
        )
        if log is not None:
            log(f"  {step}: {high:,} of {runs:,}")
    await conn.execute(f"SELECT setval('pgmq.q_orders__{step}_msg_id_seq', $1::bigint)", runs)


async def _fill_on_own_connection(dsn: str, step: str, runs: int, days: float) -> None:
    from orchestrator.db import connect

    conn = await connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        await fill_step(conn, step, runs, days=days, log=_log)
    finally:
        await conn.close()


async def _secondary_indexes(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """(name, definition) of the archives' indexes other than their primary keys."""
    rows = await conn.fetch(
        """
        SELECT i.indexname, i.indexdef
          FROM pg_indexes i
          JOIN pg_index x ON x.indexrelid = format('%I.%I', i.schemaname, i.indexname)::regclass
         WHERE i.schemaname = 'pgmq' AND i.tablename LIKE 'a\\_orders\\_\\_%' AND NOT x.indisprimary
        """
    )
    return [(r["indexname"], r["indexdef"]) for r in rows]


async def build(dsn: str, runs: int, days: float) -> list[tuple[str, float]]:
    """Apply the pipeline and fill it; returns (phase, seconds)."""
    from orchestrator.compiler import apply
    from orchestrator.db import connect
    from orchestrator.spec import parse_pipeline

    model = parse_pipeline(PIPELINE)
    phases: list[tuple[str, float]] = []
    conn = await connect(dsn)
    try:
        began = time.perf_counter()
        await apply(conn, [model])
        phases.append(("apply (compiler)", time.perf_counter() - began))
        indexes = await _secondary_indexes(conn)
        for name, _ in indexes:
            await conn.execute(f"DROP INDEX pgmq.{name}")
        began = time.perf_counter()
        for pair in (STEPS[:2], STEPS[2:]):
            await asyncio.gather(*(_fill_on_own_connection(dsn, s, runs, days) for s in pair))
        phases.append(
            (f"fill {runs * len(STEPS):,} archived messages", time.perf_counter() - began)
        )
        began = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for name, definition in indexes:
            if not name.endswith("_run_id"):
                await conn.execute(definition)
        phases.append(("archived_at indexes", time.perf_counter() - began))
        began = time.perf_counter()
        result = await apply(conn, [model])
        made = [c for c in result.plan.changes if c.kind == "index"]
        phases.append((f"run-id indexes ({len(made)} by apply)", time.perf_counter() - began))
        began = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE)")
        phases.append(("vacuum, analyze", time.perf_counter() - began))
        began = time.perf_counter()
        await extras(conn, runs)
        phases.append(("queued messages, dead letters, pause, worker", time.perf_counter() - began))
    finally:
        await conn.close()
    return phases


async def extras(conn: asyncpg.Connection, runs: int) -> None:
    """What a live system holds beside its archive: waiting, in-flight and retrying messages,
    dead letters (one run in 125, failed at label, sync or report), a paused step and a
    worker's heartbeat."""
    from orchestrator.db.named_sql import named_queries
    from orchestrator.runtime.control import pause

    await conn.execute(
        f"""
        INSERT INTO pgmq.q_orders__fetch (read_ct, enqueued_at, vt, message, headers)
        SELECT 0, t, t, {body_sql("fetch")}, {headers_sql("fetch")}
          FROM generate_series($1::bigint, $2::bigint) AS i, LATERAL (SELECT now()) AS at (t)
        """,
        runs + 1,
        runs + WAITING,
    )
    await conn.execute(
        f"""
        INSERT INTO pgmq.q_orders__sync (read_ct, enqueued_at, last_read_at, vt, message, headers)
        SELECT 1, t, t, t + interval '5 min', {body_sql("sync")},
               {headers_sql("sync")} || jsonb_build_object('errors', jsonb_build_array(
                   jsonb_build_object('attempt', 1, 'type', 'ConnectionError',
                                      'message', 'ledger unreachable', 'at', t)))
          FROM generate_series($1::bigint, $2::bigint) AS i, LATERAL (SELECT now()) AS at (t)
        """,
        runs + 1,
        runs + WAITING // 5,
    )
    await conn.execute(
        f"""
        INSERT INTO pgmq.q_orders_dlq (read_ct, enqueued_at, vt, message, headers)
        SELECT 0, t, t,
               jsonb_build_object(
                   'pipeline', 'orders', 'step', s, 'queue', 'orders__' || s,
                   'run_id', md5(i::text)::uuid::text, 'msg_id', i,
                   'payload', {body_sql("label")}, 'headers', {headers_sql("label")},
                   'attempts', 3, 'failed_at', t, 'permanent', i % 2 = 0,
                   'error', jsonb_build_object(
                       'type', e, 'message', e || ' in ' || s || ' of order ' || i,
                   'traceback', 'Traceback (most recent call last):\n  File "shop/steps.py",'
                                || ' line 42, in ' || s || E'\n' || e || ': order ' || i)),
               jsonb_build_object('run_id', md5(i::text)::uuid::text, 'pipeline', 'orders',
                                  'step', s, 'dead_letter', true)
          FROM generate_series(125, $1::bigint, 125) AS i,
               LATERAL (SELECT (ARRAY['label', 'sync', 'report'])[1 + (i / 125) % 3],
                               (ARRAY['ValueError', 'KeyError', 'HandlerTimeout',
                                      'ContractError'])[1 + (i / 375) % 4],
                               now() - make_interval(secs => ($1 - i) * $2)) AS x (s, e, t)
        """,
        runs,
        30 * 86400.0 / runs,
    )
    await conn.execute("ANALYZE pgmq.q_orders_dlq")
    await pause("orders", "label", conn=conn)
    await conn.execute(
        named_queries("orchestrator.runtime")["heartbeat"],
        "5b0c2a5e-4c55-4d43-9f70-2f8d6f1f0a11",
        "bench-host",
        os.getpid(),
        ["orders.fetch", "orders.label", "orders.sync", "orders.report"],
        300.0,
    )


def run_id(i: int) -> str:
    """The run id of run number `i` (md5 of its number as a UUID, as the fill writes it)."""
    import hashlib
    import uuid

    return str(uuid.UUID(hashlib.md5(str(i).encode()).hexdigest()))


def pages(runs: int) -> dict[str, str]:
    """Each dashboard page, by name, as the path requested."""
    middle = run_id(runs // 2)
    dead = run_id(125 * (runs // 250))
    return {
        "overview": "/",
        "step (last hour)": "/pipelines/orders/steps/sync",
        "runs, first page": "/runs?pipeline=orders",
        "runs, deep page": f"/runs?pipeline=orders&before={runs // 3}",
        "runs, state=running": "/runs?pipeline=orders&state=running",
        "runs, state=done": "/runs?pipeline=orders&state=done",
        "runs, state=dead-lettered": "/runs?pipeline=orders&state=dead-lettered",
        "runs, run id": f"/runs?pipeline=orders&run={middle}",
        "runs, customer_id = 4242": "/runs?pipeline=orders&field=customer_id+%3D+4242",
        "run page (done)": f"/runs/{middle}",
        "run page (dead-lettered)": f"/runs/{dead}",
        "dead letters": "/dead-letters?pipeline=orders",
        "dead letters, step=sync": "/dead-letters?pipeline=orders&step=sync",
        "dead letters, error=KeyError": "/dead-letters?pipeline=orders&error=KeyError",
        "dead letter": f"/dead-letters/orders/{max(1, runs // 250)}",
        "workers": "/workers",
    }


def commands(runs: int) -> dict[str, Callable[[asyncpg.Connection], Awaitable[Any]]]:
    """The CLI's read models, by command line, called as the CLI calls them."""
    from orchestrator.ops.dlq import Filter, count_dead_letters, list_dead_letters
    from orchestrator.ops.status import collect_status
    from orchestrator.ops.trace import trace_run
    from orchestrator.state import applied_pipeline

    middle = run_id(runs // 2)
    dead = run_id(125 * (runs // 250))

    def dlq_list(where: Filter) -> Callable[[asyncpg.Connection], Awaitable[Any]]:
        async def call(c: asyncpg.Connection) -> None:  # as _dlq_list of cli/ops_cmd.py
            await list_dead_letters(c, "orders", where, limit=50)
            await count_dead_letters(c, await applied_pipeline(c, "orders"), where)

        return call

    return {
        "trace RUN_ID (done)": lambda c: trace_run(c, middle),
        "trace RUN_ID (dead-lettered)": lambda c: trace_run(c, dead),
        "status": lambda c: collect_status(c),
        "dlq list orders": dlq_list(Filter()),
        "dlq list orders --step sync": dlq_list(Filter(step="sync")),
        "dlq list orders --error KeyError": dlq_list(Filter(error="KeyError")),
    }


@dataclass
class Timing:
    name: str
    times: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.times, 50)

    @property
    def p95(self) -> float:
        return percentile(self.times, 95)


async def time_pages(dsn: str, paths: dict[str, str], repeat: int) -> list[Timing]:
    from orchestrator.ui.security import Guard
    from orchestrator.ui.web import create_app

    app = create_app(dsn, guard=Guard(loopback=True))
    found = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bench", follow_redirects=True
    ) as client:
        for name, path in paths.items():
            times = []
            for attempt in range(repeat + 1):
                began = time.perf_counter()
                response = await client.get(path)
                elapsed = (time.perf_counter() - began) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{name}: {path} answered {response.status_code}")
                if attempt:
                    times.append(elapsed)
            found.append(Timing(name, times))
    await app.state.dashboard.close()
    return found


async def time_commands(
    dsn: str, calls: dict[str, Callable[[asyncpg.Connection], Awaitable[Any]]], repeat: int
) -> list[Timing]:
    """Each command on a connection of its own, as the CLI opens one per command."""
    from orchestrator.db import connect

    found = []
    for name, call in calls.items():
        times = []
        for attempt in range(repeat + 1):
            began = time.perf_counter()
            conn = await connect(dsn)
            try:
                await call(conn)
            finally:
                await conn.close()
            if attempt:
                times.append((time.perf_counter() - began) * 1000)
        found.append(Timing(name, times))
    return found


@dataclass
class Plans:
    """What auto_explain reported for one read model: its statements' plans."""

    name: str
    plans: list[dict[str, Any]]

    def nodes(self) -> Iterator[dict[str, Any]]:
        def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
            yield node
            for child in node.get("Plans", []):
                yield from walk(child)

        for plan in self.plans:
            yield from walk(plan["Plan"])

    def archive_seq_scans(self, large: set[str]) -> list[str]:
        """Archives among `large` read by a sequential scan (the failures)."""
        return [
            f"{n['Relation Name']} ({n.get('Actual Rows', '?')} rows)"
            for n in self.nodes()
            if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in large
        ]

    def buffers(self) -> int:
        """Shared buffers hit and read by the top-level statements (pages of 8 kB)."""
        return sum(
            int(p["Plan"].get("Shared Hit Blocks", 0)) + int(p["Plan"].get("Shared Read Blocks", 0))
            for p in self.plans
            if not p.get("nested")
        )

    def statements(self) -> int:
        """Statements sent (nested ones, run inside functions, not counted)."""
        return sum(1 for p in self.plans if not p.get("nested"))


async def explained(
    conn: asyncpg.Connection, name: str, call: Callable[[asyncpg.Connection], Awaitable[Any]]
) -> Plans:
    """Run `call` with auto_explain on: every statement's plan (nested ones too), analysed."""
    messages: list[str] = []
    sent: set[str] = set()

    def listen(_conn: Any, message: Any) -> None:
        messages.append(str(message))

    def log_query(record: Any) -> None:
        sent.add(record.query.strip())

    conn.add_log_listener(listen)
    conn.add_query_logger(log_query)
    try:
        await call(conn)
        await asyncio.sleep(0.05)  # the query logger and log listeners are called soon after
    finally:
        conn.remove_log_listener(listen)
        conn.remove_query_logger(log_query)
    plans = []
    for text in messages:
        start = text.find("{")
        if "plan:" not in text or start < 0:
            continue
        plan = json.loads(text[start:])
        plan["nested"] = str(plan.get("Query Text", "")).strip() not in sent
        plans.append(plan)
    return Plans(name, plans)


def page_models(runs: int) -> dict[str, Callable[[asyncpg.Connection], Awaitable[Any]]]:
    """The read models each page calls (orchestrator/ui/pages.py), by page name."""
    from orchestrator.ops import dlq, status, steps, trace, workers
    from orchestrator.ops import runs as ops_runs
    from orchestrator.state.applied import applied_pipelines

    middle = run_id(runs // 2)
    dead = run_id(125 * (runs // 250))

    async def overview(c: asyncpg.Connection) -> None:
        await status.collect_status(c)
        await applied_pipelines(c)

    async def step(c: asyncpg.Connection) -> None:
        await steps.step_activity(c, "orders", "sync")
        await status.collect_status(c, ["orders"])

    def listing(**how: Any) -> Callable[[asyncpg.Connection], Awaitable[Any]]:
        async def call(c: asyncpg.Connection) -> None:
            await applied_pipelines(c)
            await ops_runs.latest_runs(c, "orders", **how)

        return call

    def letters(where: dlq.Filter) -> Callable[[asyncpg.Connection], Awaitable[Any]]:
        async def call(c: asyncpg.Connection) -> None:
            await applied_pipelines(c)
            await dlq.list_dead_letters(c, "orders", where)

        return call

    return {
        "overview": overview,
        "step (last hour)": step,
        "runs, first page": listing(),
        "runs, deep page": listing(before=runs // 3),
        "runs, state=running": listing(state="running"),
        "runs, state=done": listing(state="done"),
        "runs, state=dead-lettered": listing(state="dead-lettered"),
        "runs, run id": lambda c: trace.trace_run(c, middle),
        "runs, customer_id = 4242": listing(payload={"customer_id": 4242}),
        "run page (done)": lambda c: trace.trace_run(c, middle),
        "run page (dead-lettered)": lambda c: trace.trace_run(c, dead),
        "dead letters": letters(dlq.Filter()),
        "dead letters, step=sync": letters(dlq.Filter(step="sync")),
        "dead letters, error=KeyError": letters(dlq.Filter(error="KeyError")),
        "dead letter": lambda c: dlq.get_dead_letter(c, max(1, runs // 250), "orders"),
        "workers": lambda c: workers.live_workers(c),
    }


async def explain_all(
    dsn: str, models: dict[str, Callable[[asyncpg.Connection], Awaitable[Any]]]
) -> list[Plans]:
    """Each read model once more with auto_explain on, on one connection."""
    from orchestrator.db import connect

    conn = await connect(dsn)
    try:
        await conn.execute("LOAD 'auto_explain'")
        for setting, value in (
            ("log_min_duration", "0"),
            ("log_analyze", "on"),
            ("log_buffers", "on"),
            ("log_timing", "off"),
            ("log_nested_statements", "on"),
            ("log_format", "json"),
            ("log_level", "notice"),
        ):
            await conn.execute(f"SET auto_explain.{setting} = '{value}'")
        return [await explained(conn, name, call) for name, call in models.items()]
    finally:
        await conn.close()


async def large_archives(conn: asyncpg.Connection) -> set[str]:
    """Archive tables of schema pgmq holding 10,000 rows or more (by the statistics)."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'pgmq' AND c.relkind = 'r' AND c.relname LIKE 'a\\_%'"
        " AND c.reltuples >= 10000"
    )
    return {r["relname"] for r in rows}


async def sizes(conn: asyncpg.Connection) -> tuple[int, int, int]:
    """(database bytes, archive tables' bytes with indexes, archived rows)."""
    database = await conn.fetchval("SELECT pg_database_size(current_database())")
    archives = await conn.fetchval(
        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'pgmq' AND c.relkind = 'r' AND c.relname LIKE 'a\\_orders\\_\\_%'"
    )
    rows = 0
    for step in STEPS:
        rows += await conn.fetchval(f"SELECT count(*) FROM pgmq.a_orders__{step}")
    return database, archives, rows


async def _main(args: argparse.Namespace) -> int:
    from orchestrator.db import connect, resolve_dsn

    runs = max(args.archived // len(STEPS), 1000)
    load_before = os.getloadavg()
    server = resolve_dsn(None)
    if args.reuse:
        dsn = with_database(server, DATABASE)
        phases: list[tuple[str, float]] = []
        conn = await connect(dsn)
        try:
            from orchestrator.compiler import apply
            from orchestrator.spec import parse_pipeline

            await apply(conn, [parse_pipeline(PIPELINE)])  # the store's functions up to date
            runs = await conn.fetchval("SELECT max(msg_id) FROM pgmq.a_orders__fetch")
        finally:
            await conn.close()
    else:
        dsn = await recreate_database(server, DATABASE)
        phases = await build(dsn, runs, 30.0)
    conn = await connect(dsn)
    try:
        database_bytes, archive_bytes, archived = await sizes(conn)
        large = await large_archives(conn)
    finally:
        await conn.close()
    load_timed = os.getloadavg()
    page_times = await time_pages(dsn, pages(runs), args.repeat)
    command_times = await time_commands(dsn, commands(runs), args.repeat)
    plans = await explain_all(dsn, {**page_models(runs), **commands(runs)})
    load_after = os.getloadavg()

    print(
        f"python -m bench.archive_bench --archived {args.archived}"
        + (" --reuse" if args.reuse else "")
    )
    print(f"cores: {os.cpu_count()}")
    for label, load in (("before", load_before), ("timing", load_timed), ("after", load_after)):
        print(f"load average {label}: {' '.join(f'{v:.2f}' for v in load)}")
    print(f"archived messages: {archived:,} ({runs:,} runs x {len(STEPS)} steps)")
    print(
        f"database size: {database_bytes / 2**30:.2f} GiB"
        f" (archives with indexes {archive_bytes / 2**30:.2f} GiB)"
    )
    for phase, seconds in phases:
        print(f"build: {phase}: {seconds:.0f} s")
    by_name = {p.name: p for p in plans}
    print()
    print(
        f"| {'page or command':<34} | {'p50 ms':>8} | {'p95 ms':>8} | {'statements':>10} |"
        f" {'buffers':>8} | archive seq scans |"
    )
    print(f"|{'-' * 36}|{'-' * 10}:|{'-' * 10}:|{'-' * 11}:|{'-' * 9}:|{'-' * 19}|")
    failures = []
    for timing in [*page_times, *command_times]:
        plan = by_name[timing.name]
        scans = plan.archive_seq_scans(large)
        slow = timing.p95 > LIMIT_MS
        if scans:
            failures.append(f"{timing.name}: sequential scan of {', '.join(scans)}")
        if slow:
            failures.append(f"{timing.name}: p95 {timing.p95:.0f} ms > {LIMIT_MS:.0f} ms")
        print(
            f"| {timing.name:<34} | {timing.p50:>8.1f} | {timing.p95:>8.1f} |"
            f" {plan.statements():>10} | {plan.buffers():>8} | {', '.join(scans) or 'none':<17} |"
        )
    print()
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"every page and command: p95 under {LIMIT_MS:.0f} ms, no archive read sequentially")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.archive_bench", description=__doc__)
    parser.add_argument(
        "--archived", type=int, default=10_000_000, help="archived messages (default 10 million)"
    )
    parser.add_argument("--reuse", action="store_true", help="time the database the last run built")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="requests per page")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
