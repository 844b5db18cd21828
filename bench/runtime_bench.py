"""Runtime benchmark: step hand-offs per second and wake-up latency, beside plain SQL.

`run(dsn, quick, baseline)` (called by ``python -m bench``) measures, in this one process:

- a 3-step chain of no-op handlers (a -> b -> c), `batch_size` 1 and 100, one consumer per
  step, woken by insert notifications (default 10ms throttle) through a LISTEN connection
  as a worker process is: step hand-offs per second (every step hands each message off, the
  last one archives it), beside the plain-SQL single-message cycle (send + read + delete) that
  `baseline` carries as ``cycle_1``;
- the same chain with `batch_size` 1 through PgBouncer in transaction mode (Debian's
  `pgbouncer`, started here in front of the server when it is installed), wake-ups on a direct
  LISTEN connection as `run --listen-dsn` gives them, beside the direct chain;
- enqueue-to-handler-start latency at low load (one run at a time, insert notifications
  without throttle, a LISTEN connection waking the consumer), p50 and p99, beside its
  plain-SQL twin: send, NOTIFY, LISTEN, read.

``python -m bench.runtime_bench [--quick] [--profile] [--cost]`` runs it alone on a scratch
database; ``--profile`` prints where the process spends its time during the batch_size 1 chain;
``--cost`` prints what each hand-off of the chain costs at batch_size 1 and 100: this process's
CPU time and, when the server loads pg_stat_statements, the server's execution time and
statements (figures that a busy machine disturbs less than hand-offs per second).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench import contract_bench
from bench.common import Row, percentile
from orchestrator.db import connect, create_pool
from orchestrator.runtime import StepConsumer, StepContext, start, start_many
from orchestrator.spec import HandlerInfo, Pipeline, parse_pipeline

SECTION = "runtime"

CHAIN = """
pipeline: {name}
defaults: {{batch_size: {batch}, visibility_timeout: 60s, timeout: 30s}}
steps:
  a: {{handler: bench:noop, next: b}}
  b: {{handler: bench:noop, next: c}}
  c: {{handler: bench:noop}}
"""

LATENCY = """
pipeline: {name}
queues: {{notify: {{throttle: 0s}}}}
steps:
  only: {{handler: bench:mark}}
"""


async def noop(payload: dict[str, Any], ctx: StepContext) -> None:
    return None


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _apply(conn: asyncpg.Connection, yaml_text: str) -> Pipeline:
    """Create the queues and the pipelines row, as `orchestrator apply` would."""
    pipeline = parse_pipeline(yaml_text, Path("bench.yaml"))
    notify = pipeline.queues.notify
    for queue in pipeline.queue_names():
        await conn.execute("SELECT pgmq.create($1)", queue)
        if notify.enabled:
            await conn.execute(
                "SELECT pgmq.enable_notify_insert($1, $2)", queue, round(notify.throttle * 1000)
            )
    await conn.execute(
        "INSERT INTO orchestrator.pipelines (name, spec, spec_hash, entry_step)"
        " VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, spec_hash = excluded.spec_hash",
        pipeline.name,
        pipeline.to_json(),
        pipeline.spec_hash(),
        pipeline.entry_step,
    )
    return pipeline


def _handler(function: Any) -> HandlerInfo:
    return HandlerInfo(f"bench:{function.__name__}", function, True, True)


async def chain_throughput(
    dsn: str,
    batch: int,
    runs: int,
    concurrency: int = 1,
    name: str | None = None,
    listen_dsn: str | None = None,
    timed: Callable[[], Awaitable[None]] | None = None,
) -> float:
    """Step hand-offs per second of a 3-step chain of no-op handlers (`runs` runs); wake-ups
    LISTEN on `listen_dsn` when given (`dsn` goes through a transaction pooler)."""
    name = name or f"chain_b{batch}_c{concurrency}"
    return await handoffs_per_second(
        dsn,
        CHAIN.format(name=name, batch=batch),
        runs,
        concurrency=concurrency,
        listen_dsn=listen_dsn,
        timed=timed,
    )


async def handoffs_per_second(
    dsn: str,
    yaml_text: str,
    runs: int,
    *,
    concurrency: int | None = 1,
    listen_dsn: str | None = None,
    timed: Callable[[], Awaitable[None]] | None = None,
) -> float:
    """Apply the pipeline `yaml_text` (a chain of no-op handlers), start `runs` runs and run
    one consumer per step until the last step archived them all: step hand-offs per second.
    `concurrency` None keeps each step's own; `timed` is awaited right before the timed
    window starts and right after it ends."""
    conn = await connect(dsn)
    try:
        pipeline = await _apply(conn, yaml_text)
        for i in range(0, runs, 1000):
            chunk = [{"i": n} for n in range(i, min(runs, i + 1000))]
            await start_many(pipeline.name, chunk, conn=conn)
        await conn.execute("VACUUM ANALYZE")
        steps = pipeline.order
        loops = sum(concurrency or pipeline.step(s).concurrency for s in steps)
        pool = await create_pool(dsn, min_size=loops + 1, max_size=loops + 2)
        listener = await connect(listen_dsn or dsn)
        try:
            consumers = [
                StepConsumer(
                    pool, pipeline, pipeline.step(s), _handler(noop), concurrency=concurrency
                )
                for s in steps
            ]
            for consumer in consumers:  # wake-ups as a worker process gets them
                await listener.add_listener(f"pgmq.q_{consumer.queue}.INSERT", _waker(consumer))
            stopping = asyncio.Event()
            if timed is not None:
                await timed()
            started = time.perf_counter()
            tasks = [asyncio.create_task(c.run(stopping)) for c in consumers]
            last = f"pgmq.a_{pipeline.queue_name(steps[-1])}"
            while await conn.fetchval(f"SELECT count(*) FROM {last}") < runs:
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - started
            if timed is not None:
                await timed()
            stopping.set()
            await asyncio.gather(*tasks)
        finally:
            await listener.close()
            await pool.close()
    finally:
        await conn.close()
    return len(steps) * runs / elapsed


def _waker(consumer: StepConsumer) -> Any:
    def wake(*_: object) -> None:
        consumer.wake()

    return wake


async def wakeup_latency(dsn: str, samples: int) -> list[float]:
    """Milliseconds from `start()` to the handler's first line, one run at a time."""
    name = "latency"
    conn = await connect(dsn)
    listener = await connect(dsn)
    pool = await create_pool(dsn, min_size=2, max_size=3)
    try:
        pipeline = await _apply(conn, LATENCY.format(name=name))
        arrived: asyncio.Queue[float] = asyncio.Queue()

        async def mark(payload: dict[str, Any], ctx: StepContext) -> None:
            arrived.put_nowait(time.perf_counter())

        step = pipeline.step("only")
        consumer = StepConsumer(pool, pipeline, step, _handler(mark), poll_interval=5.0)
        await listener.add_listener(f"pgmq.q_{step.queue}.INSERT", lambda *_: consumer.wake())
        stopping = asyncio.Event()
        task = asyncio.create_task(consumer.run(stopping))
        await asyncio.sleep(0.2)
        latencies = []
        for _ in range(samples):
            sent = time.perf_counter()
            await start(name, {}, conn=conn)
            latencies.append((await asyncio.wait_for(arrived.get(), 10) - sent) * 1000)
            await asyncio.sleep(0.01)  # let the consumer go idle again
        stopping.set()
        await task
        return latencies
    finally:
        await pool.close()
        await listener.close()
        await conn.close()


async def plain_latency(dsn: str, samples: int) -> list[float]:
    """The plain-SQL twin: pgmq.send, NOTIFY, LISTEN, pgmq.read, in milliseconds."""
    queue = "latency_plain"
    conn = await connect(dsn)
    listener = await connect(dsn)
    reader = await connect(dsn)
    try:
        await conn.execute("SELECT pgmq.create($1)", queue)
        await conn.execute("SELECT pgmq.enable_notify_insert($1, 0)", queue)
        woken = asyncio.Event()
        await listener.add_listener(f"pgmq.q_{queue}.INSERT", lambda *_: woken.set())
        latencies = []
        for _ in range(samples):
            woken.clear()
            sent = time.perf_counter()
            await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
            await asyncio.wait_for(woken.wait(), 10)
            rows = await reader.fetch("SELECT msg_id FROM pgmq.read($1, 30, 1)", queue)
            latencies.append((time.perf_counter() - sent) * 1000)
            await reader.execute("SELECT pgmq.delete($1, $2::bigint)", queue, rows[0][0])
            await asyncio.sleep(0.01)
        return latencies
    finally:
        await reader.close()
        await listener.close()
        await conn.close()


async def run(dsn: str, quick: bool, baseline: dict[str, float]) -> list[Row]:
    """The runtime rows of the benchmark table (see the module docstring)."""
    from orchestrator.store import install

    conn = await connect(dsn)
    try:
        await install(conn)
    finally:
        await conn.close()
    cycle = baseline.get("cycle_1", float("nan"))
    rows: list[Row] = []
    if baseline:
        _log("plain-SQL baseline: " + ", ".join(f"{k}={v:,.0f}" for k, v in baseline.items()))
    for batch, runs in ((1, 1000 if quick else 5000), (100, 5000 if quick else 40000)):
        _log(f"3-step chain, batch_size {batch}: {runs} runs")
        rate = await chain_throughput(dsn, batch, runs)
        rows.append(
            Row(
                SECTION,
                f"3-step chain, no-op handlers, batch_size {batch}",
                3,
                rate,
                cycle,
                "hand-offs/s",
                "send + read + delete, 1 msg, 1 conn",
                "1 process, 1 consumer per step",
            )
        )
    pooled = await pooled_chain(dsn, 1000 if quick else 5000)
    if pooled is not None:
        rows.append(
            Row(
                SECTION,
                "3-step chain, no-op handlers, batch_size 1, through PgBouncer (transaction mode)",
                3,
                pooled,
                rows[0].value,
                "hand-offs/s",
                "the same chain, direct connection",
                "1 process; LISTEN on a direct connection",
            )
        )
    samples = 50 if quick else 300
    _log(f"wake-up latency: {samples} runs, one at a time")
    ours = await wakeup_latency(dsn, samples)
    plain = await plain_latency(dsn, samples)
    for pct in (50, 99):
        rows.append(
            Row(
                SECTION,
                f"enqueue to handler start, idle, p{pct}",
                2,
                percentile(ours, pct),
                percentile(plain, pct),
                "ms",
                "send, NOTIFY, LISTEN, read",
                "notify throttle 0",
                higher_is_better=False,
            )
        )
    rows += contract_bench.rows(quick)
    for row in rows:
        _log(f"  {row.workload}: {row.value:,.2f} {row.unit} (plain SQL {row.baseline:,.2f})")
    return rows


async def pooled_chain(dsn: str, runs: int) -> float | None:
    """Hand-offs per second of the batch_size 1 chain through PgBouncer in transaction mode,
    None (and a line saying so) when pgbouncer is not installed."""
    from tests.support.pgbouncer import executable, start

    if executable() is None:
        _log("pgbouncer is not installed: no row for the chain through PgBouncer")
        return None
    folder = Path.cwd() / ".orchestrator" / "bench-pgbouncer"
    shutil.rmtree(folder, ignore_errors=True)
    bouncer = start(dsn, folder)
    try:
        database = urlsplit(dsn).path.lstrip("/")
        _log(f"3-step chain through PgBouncer, batch_size 1: {runs} runs")
        return await chain_throughput(
            bouncer.dsn(database, pool_mode="transaction"),
            1,
            runs,
            name="chain_pgbouncer",
            listen_dsn=dsn,
        )
    finally:
        bouncer.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def profile(dsn: str, batch: int, runs: int) -> str:
    """cProfile of the process during a chain run: the top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    rate = await chain_throughput(dsn, batch, runs)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    return f"batch_size {batch}: {rate:,.0f} hand-offs/s under the profiler\n{out.getvalue()}"


async def cost(dsn: str, batch: int, runs: int) -> str:
    """One line: what a hand-off of the 3-step chain costs (see the module docstring)."""
    conn = await connect(dsn)
    try:
        tracked = await conn.fetchval(
            "SELECT count(*) > 0 FROM pg_settings"
            " WHERE name = 'shared_preload_libraries' AND setting ~ 'pg_stat_statements'"
        )
        if tracked:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        marks: list[tuple[float, float, int]] = []

        async def timed() -> None:
            server, statements = (await conn.fetchrow(_Q_SERVER_TIME)) if tracked else (0.0, 0)
            marks.append((time.process_time(), float(server), int(statements)))

        rate = await chain_throughput(dsn, batch, runs, name=f"cost_b{batch}", timed=timed)
    finally:
        await conn.close()
    handoffs = 3 * runs
    (cpu0, srv0, st0), (cpu1, srv1, st1) = marks
    line = f"batch_size {batch}: {rate:,.0f} hand-offs/s, process CPU "
    line += f"{(cpu1 - cpu0) / handoffs * 1e6:.1f} us/hand-off"
    if tracked:
        line += f", server {(srv1 - srv0) / handoffs * 1e3:.1f} us/hand-off"
        line += f", {(st1 - st0) / handoffs * batch:.2f} statements/batch"
    else:
        line += " (pg_stat_statements not loaded: no server figures)"
    return f"{line}, load average {os.getloadavg()[0]:.2f}"


_Q_SERVER_TIME = (
    "SELECT coalesce(sum(s.total_exec_time), 0), coalesce(sum(s.calls), 0)::bigint"
    " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
    " WHERE d.datname = current_database() AND s.toplevel"
    " AND s.query NOT LIKE 'SELECT count(*) FROM pgmq.a_%'"
    " AND s.query NOT LIKE '%pg_stat_statements%'"
)
"""Execution time (ms) and statements of this database so far, the benchmark's polling of the
archive and this query left out."""


async def _main(argv: Sequence[str] | None) -> int:
    from bench.common import recreate_database
    from orchestrator.db import resolve_dsn
    from orchestrator.queue.install import install_dsn

    parser = argparse.ArgumentParser(prog="python -m bench.runtime_bench")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true", help="profile the hand-off instead")
    parser.add_argument("--batch", type=int, default=1, help="batch_size to profile")
    parser.add_argument("--cost", action="store_true", help="CPU and server time per hand-off")
    args = parser.parse_args(argv)
    dsn = await recreate_database(resolve_dsn(None), "orchestrator_runtime_bench")
    await install_dsn(dsn)
    if args.profile or args.cost:
        from orchestrator.store import install

        conn = await connect(dsn)
        try:
            await install(conn)
        finally:
            await conn.close()
    if args.profile:
        print(await profile(dsn, args.batch, 3000 if args.batch == 1 else 30000))
        return 0
    if args.cost:
        for batch, runs in (
            (1, 1000 if args.quick else 3000),
            (100, 10000 if args.quick else 30000),
        ):
            print(await cost(dsn, batch, runs))
        return 0
    for row in await run(dsn, args.quick, {}):
        print(f"{row.workload}: {row.value:,.2f} {row.unit}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1:])))
