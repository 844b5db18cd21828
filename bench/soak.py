"""`python -m bench.soak`: a steady rate of hand-offs for minutes; table bloat and worker memory.

    make bench-soak                                      # 1,000 hand-offs/s for 10 minutes
    python -m bench.soak --minutes 30 --rate 1000        # the issue's memory soak

In the scratch database ``orchestrator_soak`` on the server orchestrator uses (`DATABASE_URL`,
else the embedded PostgreSQL), applies a 3-step chain of no-op handlers (``a -> b -> c``,
`--batch-size`), starts one ``orchestrator run`` process on it (`--workers` N: a supervisor with
N children) and sends runs at `--rate` / 3 per second (every run is three hand-offs), spread
evenly over each second, for `--minutes`. Every `--every` seconds it records:

- for each queue table and archive: live and dead tuples, size with indexes, vacuums so far;
- hand-offs so far (rows inserted into the archives) and messages waiting (the backlog);
- every worker process's resident memory (VmRSS).

At the end it prints the samples and the verdicts of issue 14: queue tables' size at most 2x
their size after the first minute, and the largest worker RSS under 150 MB and not growing
(last sample against the first after the first minute).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import machine_facts, recreate_database, server_facts
from bench.fleet import _children, _rss_kb
from orchestrator.db import connect
from orchestrator.runtime import start_many

DATABASE = "orchestrator_soak"
PIPELINE = """pipeline: soak
defaults: {{batch_size: {batch}, visibility_timeout: 60s, timeout: 30s}}
steps:
  a: {{handler: bench.soak:noop, next: b}}
  b: {{handler: bench.soak:noop, next: c}}
  c: {{handler: bench.soak:noop}}
"""
WARM_UP = 60.0
"""Seconds before the reference sample (tables and memory have found their working size)."""


async def noop(payload: dict[str, Any], ctx: object) -> None:
    """The soak's handler."""
    return None


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Sample:
    at: float
    handoffs: int
    waiting: int
    queue_bytes: int
    queue_dead: int
    queue_live: int
    archive_bytes: int
    vacuums: int
    rss_kb: list[int]
    load: float


_TABLES = """
SELECT relname, n_live_tup, n_dead_tup, n_tup_ins,
       pg_total_relation_size(relid) AS bytes,
       vacuum_count + autovacuum_count AS vacuums
FROM pg_stat_user_tables
WHERE schemaname = 'pgmq' AND (relname LIKE 'q\\_soak\\_\\_%' OR relname LIKE 'a\\_soak\\_\\_%')
"""


async def sample(conn: asyncpg.Connection, began: float, pids: list[int]) -> Sample:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = await conn.fetch(_TABLES)
    queues = [r for r in rows if r["relname"].startswith("q_")]
    archives = [r for r in rows if r["relname"].startswith("a_")]
    waiting = await conn.fetchval(
        "SELECT sum(queue_length) FROM pgmq.metrics_all() WHERE queue_name LIKE 'soak\\_\\_%'"
    )
    rss = []
    for pid in pids:
        try:
            rss.append(_rss_kb(pid))
        except OSError:
            rss.append(0)
    return Sample(
        at=time.monotonic() - began,
        handoffs=sum(r["n_tup_ins"] for r in archives),
        waiting=int(waiting or 0),
        queue_bytes=sum(r["bytes"] for r in queues),
        queue_dead=sum(r["n_dead_tup"] for r in queues),
        queue_live=sum(r["n_live_tup"] for r in queues),
        archive_bytes=sum(r["bytes"] for r in archives),
        vacuums=sum(r["vacuums"] for r in queues),
        rss_kb=rss,
        load=os.getloadavg()[0],
    )


async def produce(dsn: str, runs_per_second: float, seconds: float) -> int:
    """Start runs at a steady rate (a start every 50 ms, sized to keep the rate); runs sent."""
    conn = await connect(dsn)
    sent = 0
    began = time.monotonic()
    try:
        while (elapsed := time.monotonic() - began) < seconds:
            due = int(elapsed * runs_per_second) - sent
            if due > 0:
                await start_many("soak", [{"n": sent + i} for i in range(due)], conn=conn)
                sent += due
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    return sent


def _worker_pids(process: subprocess.Popen[bytes], supervised: bool) -> list[int]:
    pids = _children(process.pid)
    return [p for p in pids if p != process.pid] if supervised else [process.pid]


async def soak(args: argparse.Namespace) -> int:
    from orchestrator.db import resolve_dsn

    facts = machine_facts()
    dsn = await recreate_database(resolve_dsn(None), DATABASE)
    base = Path(tempfile.mkdtemp(prefix="orchestrator-soak-"))
    folder = base / "pipelines"
    folder.mkdir()
    (folder / "soak.yaml").write_text(PIPELINE.format(batch=args.batch_size))
    exe = Path(sys.executable).with_name("orchestrator")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    common = ["--dsn", dsn, "--pipelines", str(folder)]
    subprocess.run([exe, "apply", *common, "--yes"], check=True, env=env, stdout=subprocess.DEVNULL)
    command = [str(exe), "run", *common, "--log-level", "warning"]
    if args.workers > 1:
        command += ["--workers", str(args.workers)]
    log = (base / "worker.log").open("wb")
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    samples: list[Sample] = []
    conn = await connect(dsn)
    try:
        facts.server = await server_facts(conn)
        await asyncio.sleep(3)  # the worker starts
        seconds = args.minutes * 60
        began = time.monotonic()
        producer = asyncio.create_task(produce(dsn, args.rate / 3, seconds))
        while not producer.done():
            pids = _worker_pids(worker, args.workers > 1)
            samples.append(await sample(conn, began, pids))
            _log(_sample_line(samples[-1]))
            await asyncio.wait({producer}, timeout=args.every)
        sent = producer.result()
        for _ in range(60):  # the worker finishes what is waiting
            last = await sample(conn, began, _worker_pids(worker, args.workers > 1))
            if last.waiting == 0:
                break
            await asyncio.sleep(1)
        samples.append(last)
        alive = worker.poll() is None
    finally:
        await conn.close()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
        worker_log = (base / "worker.log").read_text(errors="replace").splitlines()
        shutil.rmtree(base, ignore_errors=True)
    facts.load_after = os.getloadavg()
    _report(args, facts.lines(), samples, sent, alive, worker_log)
    return 0


def _sample_line(s: Sample) -> str:
    rss = max(s.rss_kb, default=0) / 1024
    return (
        f"{s.at:7.0f} s  hand-offs {s.handoffs:>9,}  waiting {s.waiting:>7,}  "
        f"queue tables {s.queue_bytes / 2**20:7.1f} MB (live {s.queue_live:>7,}, "
        f"dead {s.queue_dead:>7,}, vacuums {s.vacuums:>4})  archives "
        f"{s.archive_bytes / 2**20:7.1f} MB  worker RSS {rss:6.1f} MB  load {s.load:.1f}"
    )


def _report(
    args: argparse.Namespace,
    facts: list[str],
    samples: list[Sample],
    sent: int,
    alive: bool,
    worker_log: list[str],
) -> None:
    print(
        f"python -m bench.soak --rate {args.rate:g} --minutes {args.minutes:g} "
        f"--batch-size {args.batch_size} --workers {args.workers}"
    )
    print("\n".join(facts))
    print(f"runs sent: {sent:,} ({sent * 3:,} hand-offs asked for); worker alive: {alive}")
    for s in samples:
        print(_sample_line(s))
    reference = next((s for s in samples if s.at >= WARM_UP), samples[0])
    last = samples[-1]
    timed = [s for s in samples if s.at > 0]
    if len(timed) >= 2:
        rate = (timed[-1].handoffs - timed[0].handoffs) / (timed[-1].at - timed[0].at)
        print(f"hand-offs/s over the run: {rate:,.0f}")
    largest = max(s.queue_bytes for s in samples if s.at >= reference.at)
    print(
        f"queue tables: {reference.queue_bytes / 2**20:.1f} MB after {reference.at:.0f} s, "
        f"at most {largest / 2**20:.1f} MB after ({largest / reference.queue_bytes:.2f}x; "
        "aim < 2x)"
    )
    first_rss = max(reference.rss_kb, default=0) / 1024
    peak_rss = max(max(s.rss_kb, default=0) for s in samples) / 1024
    last_rss = max(last.rss_kb, default=0) / 1024
    print(
        f"worker RSS: {first_rss:.1f} MB after {reference.at:.0f} s, {last_rss:.1f} MB at the end,"
        f" peak {peak_rss:.1f} MB (aim < 150 MB and not growing)"
    )
    warnings = [line for line in worker_log if line.strip()]
    print(f"worker log: {len(warnings)} line(s) at warning or above")
    for line in warnings[-5:]:
        print(f"  {line[:200]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--rate", type=float, default=1000.0, help="hand-offs per second")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    return asyncio.run(soak(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
