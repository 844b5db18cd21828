"""Beside PgQueuer: no-op work drained by `orchestrator run --drain --workers 2` and by PgQueuer.

    python -m bench.pgqueuer_bench [--runs N]     # alone; `python -m bench` runs it too

- orchestrator: a 3-step chain of no-op handlers (a -> b -> c), `batch_size` 1 and 100; `--runs`
  runs are started first, then `orchestrator run --drain --workers 2` (two worker processes, as a
  user runs it) drains them. Jobs/s counts step hand-offs (3 per run), each its own handled
  message, timed from the first read to the last archive (the archive's timestamps), so process
  start-up is not counted.
- PgQueuer 1.6.0, installed by this benchmark into a venv of its own
  (`.orchestrator/bench/pgqueuer-venv`; skipped with a message when it cannot be installed): the
  same number of jobs (3 per run) of a no-op entrypoint, enqueued first, then drained by five
  QueueManagers (batches of 10) in one process, timed from the start of the drain to its end.

Both run on the same server, in databases of their own, one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import asyncpg

from bench.common import Row, recreate_database

SECTION = "beside PgQueuer"
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".orchestrator" / "bench" / "pgqueuer-venv"
PGQUEUER = "pgqueuer==1.6.0"
DRIVER = "asyncpg>=0.29"

CHAIN = """\
pipeline: chain{batch}
defaults: {{batch_size: {batch}, visibility_timeout: 60s, timeout: 30s}}
steps:
  a: {{handler: bench.pgqueuer_bench:noop, next: b}}
  b: {{handler: bench.pgqueuer_bench:noop, next: c}}
  c: {{handler: bench.pgqueuer_bench:noop}}
"""

PGQUEUER_DRAIN = textwrap.dedent(
    """
    import asyncio, sys, time
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    async def main(dsn, jobs, consumers):
        conn = await asyncpg.connect(dsn)
        queries = Queries(AsyncpgDriver(conn))
        if not await queries.schema_is_installed():
            await queries.install()
        for start in range(0, jobs, 1000):
            n = min(1000, jobs - start)
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        managers = []
        for _ in range(consumers):
            c = await asyncpg.connect(dsn)
            qm = QueueManager(Queries(AsyncpgDriver(c)))

            @qm.entrypoint("noop")
            async def noop(job):
                return None

            managers.append(qm)
        began = time.perf_counter()
        await asyncio.gather(*(qm.run(batch_size=10, mode=QueueExecutionMode.drain)
                               for qm in managers))
        elapsed = time.perf_counter() - began
        left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
        print(f"{jobs} {elapsed} {left}")

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    """
)


async def noop(payload: dict[str, object], ctx: object) -> None:
    """The chain's handler: nothing to do, so the figure is the framework's cost."""
    return None


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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


def pgqueuer_drain(python: Path, dsn: str, jobs: int) -> float:
    """PgQueuer's jobs/s draining `jobs` no-op jobs."""
    proc = subprocess.run(
        [str(python), "-c", PGQUEUER_DRAIN, dsn, str(jobs), "5"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"PgQueuer drain failed: {proc.stderr.strip().splitlines()[-1:]}")
    out = proc.stdout.split()
    done, elapsed, left = int(out[0]), float(out[1]), int(out[2])
    if left:
        raise RuntimeError(f"PgQueuer left {left} jobs")
    return done / elapsed


async def orchestrator_drain(dsn: str, runs: int, batch: int) -> float:
    """Hand-offs/s of `orchestrator run --drain --workers 2` over the 3-step chain."""
    from orchestrator.runtime import start_many

    exe = Path(sys.executable).with_name("orchestrator")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as folder:
        name = f"chain{batch}"
        (Path(folder) / f"{name}.yaml").write_text(CHAIN.format(batch=batch))
        common = ["--dsn", dsn, "--pipelines", folder]
        subprocess.run([exe, "apply", *common, "--yes"], check=True, env=env, capture_output=True)
        conn = await asyncpg.connect(dsn)
        try:
            for first in range(0, runs, 1000):
                await start_many(
                    name, [{"n": i} for i in range(first, min(runs, first + 1000))], conn=conn
                )
            subprocess.run(
                [
                    exe,
                    "run",
                    *common,
                    "--drain",
                    "--workers",
                    "2",
                    "--log-format",
                    "json",
                    "--log-level",
                    "warning",
                ],
                check=True,
                env=env,
                capture_output=True,
                timeout=900,
            )
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
    return float(row["n"]) / float(row["seconds"])


async def run(server_dsn: str, runs: int) -> list[Row]:
    """Rows for the benchmark table: orchestrator at batch 1 and 100, PgQueuer beside them."""
    python = pgqueuer_python()
    baseline = None
    if python is not None:
        dsn = await recreate_database(server_dsn, "orchestrator_bench_pgqueuer")
        _log(f"PgQueuer: draining {3 * runs} no-op jobs")
        baseline = pgqueuer_drain(python, dsn, 3 * runs)
    rows = []
    for batch in (1, 100):
        dsn = await recreate_database(server_dsn, f"orchestrator_bench_drain{batch}")
        _log(f"orchestrator run --drain --workers 2: {runs} runs, batch_size {batch}")
        rate = await orchestrator_drain(dsn, runs, batch)
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
    return rows


async def _main(argv: list[str] | None) -> int:
    from bench.common import format_table
    from orchestrator.db import resolve_dsn

    parser = argparse.ArgumentParser(prog="python -m bench.pgqueuer_bench")
    parser.add_argument("--runs", type=int, default=5000)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    rows = await run(resolve_dsn(None), args.runs)
    took = time.perf_counter() - began
    print(f"python -m bench.pgqueuer_bench --runs {args.runs}  (took {took:.0f} s)")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(_main(sys.argv[1:])))
