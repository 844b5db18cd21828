"""`python -m bench.fleet`: what an idle fleet of workers costs PostgreSQL.

    make bench-fleet                         # 20 workers, 50 steps, 60 s
    python -m bench.fleet --workers 5 --steps 10 --seconds 20

Starts a PostgreSQL of its own (the embedded server, in a scratch data directory, with
`pg_stat_statements` preloaded so every statement is counted), applies pipelines with `--steps`
steps in all (chains of ten), starts `--workers` separate `orchestrator run` processes on every
step, lets them settle (`--settle`, 240 s: a fleet asking for more connections than the server's
`max_connections` takes turns at its first reads, each worker's pool waiting for connections
the others give back), and then measures for `--seconds` while nothing is sent:

- statements per second the whole fleet sends (pg_stat_statements, the measuring session's own
  statements excluded), and the five most frequent;
- PostgreSQL's CPU: user + system time of every server process, as a share of one core;
- the workers' own CPU and resident memory;
- why any worker exited (the last line it logged), and the last warning of the others.

The aim in the issue tracker: 20 idle workers on 50 steps cost PostgreSQL under 1% of a core
and under 20 statements per second in total.
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

import asyncpg

from bench.common import machine_facts, recreate_database

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    server_ticks: int
    worker_ticks: int
    worker_rss_kb: list[int]


def _pipelines(folder: Path, steps: int) -> list[str]:
    names = []
    for p in range((steps + 9) // 10):
        count = min(10, steps - p * 10)
        name = f"fleet{p}"
        lines = [f"pipeline: {name}", "steps:"]
        for s in range(count):
            lines.append(f"  s{s}:")
            lines.append("    handler: bench.fleet:noop")
            if s + 1 < count:
                lines.append(f"    next: [s{s + 1}]")
        (folder / f"{name}.yaml").write_text("\n".join(lines) + "\n")
        names.append(name)
    return names


async def noop(payload: dict[str, object], ctx: object) -> None:
    """The fleet's handler (never called: nothing is sent)."""
    return None


def _children(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            text = Path(f"/proc/{current}/task/{current}/children").read_text()
        except OSError:
            continue
        todo += [int(c) for c in text.split()]
    return found


def _ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _sample(postmaster: int, workers: list[subprocess.Popen[bytes]]) -> Sample:
    worker_pids = [pid for w in workers for pid in _children(w.pid)]
    return Sample(
        _ticks(_children(postmaster)),
        _ticks(worker_pids),
        [_rss_kb(w.pid) for w in workers],
    )


def _start_server(pgdata: Path) -> tuple[str, int]:
    from orchestrator.db import embedded

    dsn = embedded.ensure_running(pgdata)
    conf = pgdata / "postgresql.auto.conf"
    conf.write_text(conf.read_text() + "\nshared_preload_libraries = 'pg_stat_statements'\n")
    embedded.stop(pgdata)
    dsn = embedded.ensure_running(pgdata)
    status = embedded.status(pgdata)
    assert status.pid is not None
    return dsn, status.pid


async def _statements(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT calls, query FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        "   AND query NOT LIKE '%pg_stat_statements%'"
        " ORDER BY calls DESC"
    )


async def _connections(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )
    )


async def _wait_connected(conn: asyncpg.Connection, workers: int, limit: float = 300.0) -> None:
    """Wait until the workers hold a connection each (they start slowly under load)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        listening = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        if listening >= workers:
            return
        await asyncio.sleep(1)
    raise SystemExit(f"only {listening} of {workers} workers connected within {limit:.0f} s")


async def measure(args: argparse.Namespace) -> int:
    base = Path(tempfile.mkdtemp(prefix="orchestrator-fleet-"))
    os.chmod(base, 0o755)
    pgdata = base / "pgdata"
    folder = base / "pipelines"
    folder.mkdir()
    _pipelines(folder, args.steps)
    server_dsn, postmaster = _start_server(pgdata)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        dsn = await recreate_database(server_dsn, "fleet")
        exe = Path(sys.executable).with_name("orchestrator")
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        common = ["--dsn", dsn, "--pipelines", str(folder)]
        subprocess.run(
            [exe, "apply", *common, "--yes"], check=True, env=env, stdout=subprocess.DEVNULL
        )
        logs = base / "logs"
        logs.mkdir()
        for i in range(args.workers):
            with (logs / f"worker{i}.log").open("wb") as log:
                workers.append(
                    subprocess.Popen(
                        [exe, "run", *common, "--log-level", "warning"],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                )
        print(
            f"{args.workers} workers on {args.steps} steps; settling {args.settle} s",
            file=sys.stderr,
        )
        conn = await asyncpg.connect(dsn)
        try:
            await _wait_connected(conn, args.workers)
            await asyncio.sleep(args.settle)
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.execute("SELECT pg_stat_statements_reset()")
            before = _sample(postmaster, workers)
            began = time.monotonic()
            connections = [await _connections(conn)]
            await asyncio.sleep(args.seconds)
            after = _sample(postmaster, workers)
            elapsed = time.monotonic() - began
            rows = await _statements(conn)
            connections.append(await _connections(conn))
        finally:
            await conn.close()
        alive = sum(w.poll() is None for w in workers)
        _report(args, rows, before, after, elapsed, alive)
        print(f"server connections at the start and end of the window: {connections}")
        _report_logs(logs, workers)
        return 0 if alive == args.workers else 1
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
        from orchestrator.db import embedded

        embedded.stop(pgdata)
        shutil.rmtree(base, ignore_errors=True)


def _report(
    args: argparse.Namespace,
    rows: list[asyncpg.Record],
    before: Sample,
    after: Sample,
    elapsed: float,
    alive: int,
) -> None:
    calls = sum(r["calls"] for r in rows)
    server_cpu = (after.server_ticks - before.server_ticks) / TICKS / elapsed
    worker_cpu = (after.worker_ticks - before.worker_ticks) / TICKS / elapsed
    rss = sorted(after.worker_rss_kb)
    print(
        f"python -m bench.fleet --workers {args.workers} --steps {args.steps} "
        f"--seconds {args.seconds}"
    )
    print("\n".join(machine_facts().lines()))
    print(f"workers alive at the end: {alive} of {args.workers}")
    print(
        f"statements: {calls} in {elapsed:.0f} s = {calls / elapsed:.2f}/s "
        f"({calls / elapsed / max(args.workers, 1):.3f}/s per worker)"
    )
    print(f"PostgreSQL CPU: {server_cpu * 100:.2f}% of one core")
    print(f"workers' CPU: {worker_cpu * 100:.2f}% of one core in all")
    if rss:
        print(f"worker RSS: median {rss[len(rss) // 2] / 1024:.0f} MB, max {rss[-1] / 1024:.0f} MB")
    print("most frequent statements:")
    for r in rows[:5]:
        text = " ".join(r["query"].split())
        print(f"  {r['calls']:>6}  {text[:110]}")


def _report_logs(logs: Path, workers: list[subprocess.Popen[bytes]]) -> None:
    """Why workers died, and how many warnings the living ones logged (their last line)."""
    refused = [
        line[:32]
        for i in range(len(workers))
        for line in (logs / f"worker{i}.log").read_text(errors="replace").splitlines()
        if "refused" in line or "too many clients" in line
    ]
    print(f"refused connections logged: {len(refused)}, the last: {max(refused, default='none')}")
    for i, worker in enumerate(workers):
        lines = (logs / f"worker{i}.log").read_text(errors="replace").splitlines()
        if worker.poll() is not None:
            last = lines[-1] if lines else "(nothing logged)"
            print(f"worker {i} exited with {worker.returncode}: {last[:200]}")
        elif lines:
            print(f"worker {i} logged {len(lines)} line(s), the last: {lines[-1][:160]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=240.0)
    return asyncio.run(measure(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
