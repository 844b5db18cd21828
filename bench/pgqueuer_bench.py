"""Beside PgQueuer: no-op work drained by `orchestrator run --drain --workers 2` and by PgQueuer.

    python -m bench.pgqueuer_bench [--runs N] [--cost]   # alone; `python -m bench` runs it too

- orchestrator: a 3-step chain of no-op handlers (a -> b -> c), `batch_size` 1 and 100; `--runs`
  runs are started first, visible STARTUP_GRACE seconds later, then `orchestrator run --drain
  --workers 2` (two worker processes, as a user runs it) drains them; both workers are up
  before the first run becomes visible. Jobs/s counts step hand-offs (3 per run), each its own
  handled message, timed from the first read to the last archive (the archive's timestamps), so
  process start-up and the drain's exit are not counted.
- PgQueuer 1.6.0, installed by this benchmark into a venv of its own
  (`.orchestrator/bench/pgqueuer-venv`; skipped with a message when it cannot be installed): the
  same number of jobs (3 per run) of a no-op entrypoint, enqueued first, then drained by five
  QueueManagers (batches of 10) in one process, timed the same way from its log table: from the
  first `picked` entry to the last `successful` one (start-up and the drain's exit excluded).
- the raw SQL ceiling of one committed transaction per hand-off (`ceiling`): N connections
  (1, 2, 4, 8, 16) of asyncpg, no framework, each looping over one statement that reads one
  message of a queue, sends it to another and deletes it (one round trip, one commit per
  hand-off: what no runtime that commits each hand-off can beat on this server), and the same
  as a transaction of two statements (read; send + delete) as a plain program would write it.
  The best N of the one-statement form is the ceiling each side's jobs/s is a fraction of.

Both run on the same server, in databases of their own, one after the other. `--cost` also
prints, per hand-off of the batch_size 1 drain and per PgQueuer job: statements (by query, from
pg_stat_statements when the server loads it), commits, WAL flushes and bytes (pg_stat_io,
pg_stat_wal), and the CPU time of the draining processes beside PostgreSQL's; each less what
the same command costs on empty queues (start-up, the drain's checks and exit).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.common import Row, recreate_database

SECTION = "beside PgQueuer"
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".orchestrator" / "bench" / "pgqueuer-venv"
PGQUEUER = "pgqueuer==1.6.0"
DRIVER = "asyncpg>=0.29"
CEILING_CONNS = (1, 2, 4, 8, 16)
CEILING_JOBS = 6000
"""Messages moved per connection count of the ceiling (at most; fewer with fewer jobs): ten
runs of it keep `make bench` within its time."""
STARTUP_GRACE = 5.0
"""Seconds between sending the chain's runs and their becoming visible: `run --workers 2`
starts both processes within it (about 1-2 s on this machine under load)."""

CHAIN = """\
pipeline: chain{batch}
defaults: {{batch_size: {batch}, visibility_timeout: 60s, timeout: 30s}}
steps:
  a: {{handler: bench.pgqueuer_bench:noop, next: b}}
  b: {{handler: bench.pgqueuer_bench:noop, next: c}}
  c: {{handler: bench.pgqueuer_bench:noop}}
"""

PGQUEUER_ENQUEUE = textwrap.dedent(
    """
    import asyncio, sys
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    async def main(dsn, jobs):
        conn = await asyncpg.connect(dsn)
        queries = Queries(AsyncpgDriver(conn))
        if not await queries.schema_is_installed():
            await queries.install()
        for start in range(0, jobs, 1000):
            n = min(1000, jobs - start)
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        await conn.execute("TRUNCATE pgqueuer_log")

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)

PGQUEUER_DRAIN = textwrap.dedent(
    """
    import asyncio, sys
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    async def main(dsn, consumers):
        managers = []
        for _ in range(consumers):
            c = await asyncpg.connect(dsn)
            qm = QueueManager(Queries(AsyncpgDriver(c)))

            @qm.entrypoint("noop")
            async def noop(job):
                return None

            managers.append(qm)
        await asyncio.gather(*(qm.run(batch_size=10, mode=QueueExecutionMode.drain)
                               for qm in managers))

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)

PGQUEUER_TIMING = """
SELECT (SELECT count(*) FROM pgqueuer) AS left,
       count(*) FILTER (WHERE status = 'successful') AS done,
       extract(epoch FROM max(created) FILTER (WHERE status = 'successful')
                        - min(created) FILTER (WHERE status = 'picked')) AS seconds
  FROM pgqueuer_log
"""

CEILING_STATEMENT = """
SELECT pgmq.send('sink', r.message), pgmq.delete('source', r.msg_id)
  FROM pgmq.read('source', 60, 1) AS r
"""


async def noop(payload: dict[str, object], ctx: object) -> None:
    """The chain's handler: nothing to do, so the figure is the framework's cost."""
    return None


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# --- what a drain costs ---------------------------------------------------------------------


@dataclass
class Cost:
    """What the server and the draining processes spent over one drain, per job."""

    jobs: int = 0
    commits: int = 0
    wal_flushes: int = 0
    wal_bytes: int = 0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    statements: list[tuple[int, str]] = field(default_factory=list)

    def minus(self, idle: Cost | None) -> Cost:
        """These costs less those of `idle`, the same command on empty queues (start-up,
        the drain's check and exit), so what remains is what the jobs cost."""
        if idle is None:
            return self
        calls = {query: n for n, query in idle.statements}
        return Cost(
            jobs=self.jobs,
            commits=self.commits - idle.commits,
            wal_flushes=self.wal_flushes - idle.wal_flushes,
            wal_bytes=self.wal_bytes - idle.wal_bytes,
            client_cpu=self.client_cpu - idle.client_cpu,
            server_cpu=self.server_cpu - idle.server_cpu,
            statements=sorted(
                ((n - calls.get(query, 0), query) for n, query in self.statements), reverse=True
            ),
        )

    def lines(self, what: str) -> list[str]:
        n = max(1, self.jobs)
        out = [
            f"{what}: {self.jobs} jobs; per job: {self.commits / n:.2f} commits,"
            f" {self.wal_flushes / n:.2f} WAL flushes, {self.wal_bytes / n:,.0f} WAL bytes,"
            f" CPU {1e6 * self.client_cpu / n:,.0f} us in the draining processes and"
            f" {1e6 * self.server_cpu / n:,.0f} us in PostgreSQL"
        ]
        if self.statements:
            total = sum(calls for calls, _ in self.statements)
            out.append(f"  statements per job: {total / n:.2f}, by query:")
            out += [f"    {calls / n:6.2f}  {query}" for calls, query in self.statements[:12]]
        return out


def _postgres_cpu(pid: int | None) -> float:
    """CPU seconds of the postmaster, its live children and its reaped children."""
    if pid is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid:  # utime, stime, cutime, cstime: reaped backends included
            total += sum(int(x) for x in fields[11:15])
        elif int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


async def _postmaster(conn: asyncpg.Connection) -> int | None:
    """The local server's postmaster pid (None when the server is not on this machine)."""
    try:
        folder = await conn.fetchval("SELECT current_setting('data_directory')")
        return int(Path(folder, "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, asyncpg.PostgresError):
        return None


async def _statements_loaded(conn: asyncpg.Connection) -> bool:
    loaded = await conn.fetchval(
        "SELECT current_setting('shared_preload_libraries') ~ 'pg_stat_statements'"
    )
    if loaded:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return bool(loaded)


async def _server_counters(conn: asyncpg.Connection) -> tuple[int, int, int]:
    """Commits in this database, WAL flushes and WAL bytes of the server."""
    row = await conn.fetchrow(
        "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),"
        " (SELECT coalesce(sum(fsyncs), 0) FROM pg_stat_io WHERE object = 'wal')::bigint,"
        " (SELECT wal_bytes FROM pg_stat_wal)::bigint"
    )
    return int(row[0]), int(row[1]), int(row[2])


async def measured(
    dsn: str, jobs: int, drain: Callable[[], Awaitable[None]], with_cost: bool
) -> Cost | None:
    """Run `drain`; with `with_cost`, what it cost (see `Cost`)."""
    if not with_cost:
        await drain()
        return None
    conn = await asyncpg.connect(dsn)
    try:
        pid = await _postmaster(conn)
        statements = await _statements_loaded(conn)
        if statements:
            await conn.execute("SELECT pg_stat_statements_reset()")
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        before = await _server_counters(conn)
        client = resource.getrusage(resource.RUSAGE_CHILDREN)
        server = _postgres_cpu(pid)
        await drain()
        server = _postgres_cpu(pid) - server
        after_client = resource.getrusage(resource.RUSAGE_CHILDREN)
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        await asyncio.sleep(0.6)  # statistics reach the shared counters within 0.5 s
        after = await _server_counters(conn)
        cost = Cost(
            jobs=jobs,
            commits=after[0] - before[0],
            wal_flushes=after[1] - before[1],
            wal_bytes=after[2] - before[2],
            client_cpu=(after_client.ru_utime - client.ru_utime)
            + (after_client.ru_stime - client.ru_stime),
            server_cpu=server,
        )
        if statements:
            rows = await conn.fetch(
                "SELECT s.calls, regexp_replace(left(s.query, 90), '\\s+', ' ', 'g') AS query"
                "  FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                " WHERE d.datname = current_database() AND s.query !~ 'pg_stat'"
                " ORDER BY s.calls DESC"
            )
            cost.statements = [(int(r["calls"]), r["query"]) for r in rows]
        return cost
    finally:
        await conn.close()


# --- PgQueuer -------------------------------------------------------------------------------


def pgqueuer_python() -> Path | None:
    """The Python of a venv holding PgQueuer, made on first use; None when it cannot be."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    if stamp.exists():
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", PGQUEUER, DRIVER],
            check=True,
            capture_output=True,
            timeout=300,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        _log(f"PgQueuer comparison skipped: could not install {PGQUEUER} ({exc})")
        return None
    stamp.touch()
    return python


def _python(python: Path, code: str, *args: str) -> None:
    proc = subprocess.run(
        [str(python), "-c", code, *args], capture_output=True, text=True, timeout=900, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"PgQueuer failed: {proc.stderr.strip().splitlines()[-1:]}")


async def pgqueuer_drain(
    python: Path, dsn: str, jobs: int, with_cost: bool = False
) -> tuple[float, Cost | None]:
    """PgQueuer's jobs/s draining `jobs` no-op jobs, from first pick to last success."""
    _python(python, PGQUEUER_ENQUEUE, dsn, "0")

    async def drain() -> None:
        await asyncio.to_thread(_python, python, PGQUEUER_DRAIN, dsn, "5")

    idle = await measured(dsn, 0, drain, with_cost)
    _python(python, PGQUEUER_ENQUEUE, dsn, str(jobs))
    cost = await measured(dsn, jobs, drain, with_cost)
    cost = cost.minus(idle) if cost is not None else None
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(PGQUEUER_TIMING)
    finally:
        await conn.close()
    if row["left"] or row["done"] != jobs:
        raise RuntimeError(f"PgQueuer left {row['left']} jobs, logged {row['done']} successes")
    return jobs / float(row["seconds"]), cost


# --- orchestrator ---------------------------------------------------------------------------


async def orchestrator_drain(
    dsn: str, runs: int, batch: int, with_cost: bool = False
) -> tuple[float, Cost | None]:
    """Hand-offs/s of `orchestrator run --drain --workers 2` over the 3-step chain."""
    from orchestrator.runtime import start_many

    exe = Path(sys.executable).with_name("orchestrator")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as folder:
        name = f"chain{batch}"
        (Path(folder) / f"{name}.yaml").write_text(CHAIN.format(batch=batch))
        common = ["--dsn", dsn, "--pipelines", folder]
        subprocess.run([exe, "apply", *common, "--yes"], check=True, env=env, capture_output=True)
        command = [
            *(str(exe), "run", *common, "--drain", "--workers", "2"),
            *("--log-format", "json", "--log-level", "warning"),
        ]

        async def drain() -> None:
            await asyncio.to_thread(
                subprocess.run, command, check=True, env=env, capture_output=True, timeout=900
            )

        conn = await asyncpg.connect(dsn)
        try:
            idle = await measured(dsn, 0, drain, with_cost)
            # Every run becomes visible STARTUP_GRACE seconds after the first was sent: by
            # then both workers are up, so the first read does not race the second's start.
            visible_at = time.monotonic() + STARTUP_GRACE
            for first in range(0, runs, 1000):
                await start_many(
                    name,
                    [{"n": i} for i in range(first, min(runs, first + 1000))],
                    conn=conn,
                    delay=max(0.0, visible_at - time.monotonic()),
                )
            cost = await measured(dsn, 3 * runs, drain, with_cost)
            cost = cost.minus(idle) if cost is not None else None
            row = await conn.fetchrow(
                f"SELECT count(*) AS n, extract(epoch FROM max(archived_at) - min(last_read_at))"
                f" AS seconds FROM (SELECT archived_at, last_read_at FROM pgmq.a_{name}__a"
                f" UNION ALL SELECT archived_at, last_read_at FROM pgmq.a_{name}__b"
                f" UNION ALL SELECT archived_at, last_read_at FROM pgmq.a_{name}__c) AS a"
            )
        finally:
            await conn.close()
    if row["n"] != 3 * runs:
        raise RuntimeError(f"expected {3 * runs} hand-offs, archived {row['n']}")
    return float(row["n"]) / float(row["seconds"]), cost


# --- the raw SQL ceiling --------------------------------------------------------------------


async def ceiling(
    server_dsn: str, jobs: int, conns: int, *, two_statements: bool = False
) -> tuple[float, Cost]:
    """Hand-offs/s of `conns` asyncpg connections moving `jobs` messages from one queue to
    another, one committed transaction per message, no framework (see the module docstring)."""
    from orchestrator.queue.install import install_dsn

    dsn = await recreate_database(server_dsn, "orchestrator_bench_ceiling")
    await install_dsn(dsn)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute("SELECT pgmq.create('source'), pgmq.create('sink')")
        for first in range(0, jobs, 1000):
            n = min(1000, jobs - first)
            await admin.execute(
                "SELECT pgmq.send_batch('source', array_fill('{}'::jsonb, ARRAY[$1::int]))", n
            )
        pool = [await asyncpg.connect(dsn) for _ in range(conns)]
        statement = CEILING_STATEMENT.strip()

        async def one_statement(conn: asyncpg.Connection) -> int:
            done = 0
            while await conn.fetchrow(statement) is not None:
                done += 1
            return done

        async def two(conn: asyncpg.Connection) -> int:
            done = 0
            while True:
                async with conn.transaction():
                    row = await conn.fetchrow("SELECT * FROM pgmq.read('source', 60, 1)")
                    if row is None:
                        return done
                    await conn.execute(
                        "SELECT pgmq.send('sink', $1::jsonb), pgmq.delete('source', $2::bigint)",
                        row["message"],
                        row["msg_id"],
                    )
                done += 1

        loop = two if two_statements else one_statement
        began = 0.0
        done = 0

        async def drain() -> None:
            nonlocal began, done
            began = time.perf_counter()
            done = sum(await asyncio.gather(*(loop(c) for c in pool)))

        server_cpu_pid = await _postmaster(admin)
        cpu = _postgres_cpu(server_cpu_pid)
        ours = time.process_time()
        cost = await measured(dsn, jobs, drain, True)
        elapsed = time.perf_counter() - began
        assert cost is not None
        cost.client_cpu = time.process_time() - ours
        cost.server_cpu = _postgres_cpu(server_cpu_pid) - cpu
        for conn in pool:
            await conn.close()
    finally:
        await admin.close()
    if done != jobs:
        raise RuntimeError(f"ceiling: moved {done} of {jobs} messages")
    return jobs / elapsed, cost


async def ceiling_rows(server_dsn: str, jobs: int, with_cost: bool) -> tuple[list[Row], float]:
    """The raw SQL ceiling at each of CEILING_CONNS; rows and the best one-statement figure."""
    rows = []
    best = 0.0
    for two_statements in (False, True):
        form = "read; send + delete (2 statements)" if two_statements else "1 statement"
        figures = {}
        for conns in CEILING_CONNS:
            rate, cost = await ceiling(server_dsn, jobs, conns, two_statements=two_statements)
            figures[conns] = rate
            _log(f"  raw SQL, {form}, {conns} conn(s): {rate:,.0f}/s (load {_load()})")
            if with_cost:
                for line in cost.lines(f"  raw SQL, {form}, {conns} conn(s)")[:1]:
                    print(line)
        base = figures[1]
        for conns, rate in figures.items():
            rows.append(
                Row(
                    SECTION,
                    f"raw SQL, one commit per hand-off, {form}",
                    conns,
                    rate,
                    base,
                    "hand-offs/s",
                    "the same with 1 connection",
                )
            )
        if not two_statements:
            best = max(figures.values())
    return rows, best


async def run(server_dsn: str, runs: int, with_cost: bool = False) -> list[Row]:
    """Rows for the benchmark table: orchestrator at batch 1 and 100, PgQueuer beside them,
    and the raw SQL ceiling of one commit per hand-off."""
    jobs = 3 * runs
    moved = min(jobs, CEILING_JOBS)
    _log(f"raw SQL ceiling: {moved} hand-offs at {CEILING_CONNS} connections")
    rows, best = await ceiling_rows(server_dsn, moved, with_cost)
    python = pgqueuer_python()
    baseline = None
    if python is not None:
        dsn = await recreate_database(server_dsn, "orchestrator_bench_pgqueuer")
        _log(f"PgQueuer: draining {jobs} no-op jobs (load {_load()})")
        baseline, cost = await pgqueuer_drain(python, dsn, jobs, with_cost)
        _log(f"  PgQueuer: {baseline:,.0f} jobs/s (load {_load()})")
        if cost is not None:
            print("\n".join(cost.lines("PgQueuer 1.6.0, 5 consumers, batches of 10")))
        rows.append(
            Row(
                SECTION,
                "PgQueuer 1.6.0 drain, 5 consumers, batches of 10",
                5,
                baseline,
                best,
                "jobs/s",
                "raw SQL ceiling, best of 1-16 connections",
            )
        )
    for batch in (1, 100):
        dsn = await recreate_database(server_dsn, f"orchestrator_bench_drain{batch}")
        _log(f"orchestrator run --drain --workers 2: {runs} runs, batch_size {batch}")
        rate, cost = await orchestrator_drain(dsn, runs, batch, with_cost and batch == 1)
        _log(f"  batch_size {batch}: {rate:,.0f} hand-offs/s (load {_load()})")
        if cost is not None:
            print("\n".join(cost.lines(f"orchestrator, batch_size {batch}")))
        rows.append(
            Row(
                SECTION,
                f"3-step no-op chain, run --drain --workers 2, batch_size {batch}",
                2,
                rate,
                baseline or 0.0,
                "hand-offs/s",
                "PgQueuer 1.6.0 drain, 5 consumers, batches of 10" if baseline else "(no PgQueuer)",
            )
        )
        if batch == 1:
            rows.append(
                Row(
                    SECTION,
                    "3-step no-op chain, batch_size 1, beside the raw SQL ceiling",
                    2,
                    rate,
                    best,
                    "hand-offs/s",
                    "raw SQL ceiling, best of 1-16 connections",
                )
            )
    return rows


async def _main(argv: list[str] | None) -> int:
    from bench.common import format_table
    from orchestrator.db import resolve_dsn

    parser = argparse.ArgumentParser(prog="python -m bench.pgqueuer_bench")
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument(
        "--cost", action="store_true", help="print what each hand-off and job costs"
    )
    args = parser.parse_args(argv)
    began = time.perf_counter()
    load = _load()
    rows = await run(resolve_dsn(None), args.runs, args.cost)
    took = time.perf_counter() - began
    print(
        f"python -m bench.pgqueuer_bench --runs {args.runs}{' --cost' if args.cost else ''}"
        f"  (took {took:.0f} s; load average before {load}, after {_load()})"
    )
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(_main(sys.argv[1:])))
