"""`python -m bench [queue|sqlpath|fifo] [--quick]`: run the benchmarks and print one table.

The benchmarks run in a scratch database, `orchestrator_bench` (dropped and created anew, the
queue layer installed), on the server orchestrator uses: `DATABASE_URL`, else the embedded
server. The queue benchmark runs first, then the queue API called as SQL functions beside PGMQ
1.13's SQL (`bench/sqlpath_bench.py`) and the grouped-read benchmark beside it
(`bench/fifo_bench.py`), each with PGMQ in a second scratch database; then, when
`bench/runtime_bench.py` exists, the runtime benchmark,
`async def run(dsn, quick, baseline) -> list[Row]`, with `baseline` the plain-SQL
single-message figures the queue benchmark measured (`queue_bench.baseline`). Progress goes
to stderr; machine facts and the table go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import os
import sys
import time

from bench import fifo_bench, queue_bench, sqlpath_bench
from bench.common import Row, format_table, machine_facts, recreate_database, server_facts

DATABASE = "orchestrator_bench"


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _main(parts: str, quick: bool) -> int:
    from orchestrator.db import connect, resolve_dsn
    from orchestrator.queue.install import install_dsn

    facts = machine_facts()
    server_dsn = resolve_dsn(None)
    dsn = await recreate_database(server_dsn, DATABASE)
    await install_dsn(dsn)
    conn = await connect(dsn)
    try:
        facts.server = await server_facts(conn)
    finally:
        await conn.close()
    started = time.perf_counter()
    rows: list[Row] = []
    if parts in ("all", "queue"):
        _log(f"queue benchmark ({'quick' if quick else 'full'}) in database {DATABASE}")
        rows += await queue_bench.run(dsn, quick, log=_log)
    if parts in ("all", "sqlpath"):
        _log("the queue API as SQL functions beside PGMQ 1.13's SQL")
        rows += await sqlpath_bench.run(server_dsn, dsn, quick, log=_log)
    if parts in ("all", "fifo"):
        _log("grouped-read benchmark beside PGMQ 1.13's SQL")
        rows += await fifo_bench.run(server_dsn, dsn, quick, log=_log)
    if parts == "all" and importlib.util.find_spec("bench.runtime_bench") is not None:
        runtime_bench = importlib.import_module("bench.runtime_bench")
        _log("runtime benchmark")
        rows += await runtime_bench.run(dsn, quick, queue_bench.baseline(rows))
    if parts == "all":
        from bench import pgqueuer_bench

        _log("beside PgQueuer (installed into a venv of its own on first use)")
        rows += await pgqueuer_bench.run(server_dsn, 1000 if quick else 5000)
    facts.load_after = os.getloadavg()
    print(f"python -m bench{'' if parts == 'all' else ' ' + parts}{' --quick' if quick else ''}")
    print(f"took {time.perf_counter() - started:.0f} s")
    print("\n".join(facts.lines()))
    print()
    print(format_table(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "parts",
        nargs="?",
        choices=["all", "queue", "sqlpath", "fifo"],
        default="all",
        help="what to run",
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    return asyncio.run(_main(args.parts, args.quick))


if __name__ == "__main__":
    sys.exit(main())
