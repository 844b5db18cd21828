"""Grouped (FIFO) reads at depth, beside PGMQ 1.13's own SQL.

Two databases on one server: the benchmark's database (our queue layer) and
`orchestrator_bench_pgmq`, created anew with PGMQ 1.13's SQL as the `pgmq` Python package
ships it (a dev dependency). Each gets a queue `fifo` holding `depth` visible messages in 1,000
groups (`x-pgmq-group` = g0..g999, messages of a group spread over the whole table), filled by
the same INSERT, with each side's FIFO index (`create_fifo_index`: ours a btree on the group key
and msg_id, PGMQ's a GIN index on headers), then VACUUM ANALYZE.

A call is `SELECT * FROM pgmq.<function>('fifo', 0, 10)`: vt 0 leaves the messages visible, so
every call finds the same depth (each call still updates the 10 rows it returns). The two
sides take turns; the figure is the median time of one call, in milliseconds. PGMQ's grouped
reads aggregate over the whole table (read_grouped also probes it once per group), so at depth
a side stops after BUDGET_S seconds on one function, and a call running past TIMEOUT_S is
cancelled: its figure is then a lower bound, said in the row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.resources import files

import asyncpg

from bench.common import Row, median, recreate_database

PGMQ_DATABASE = "orchestrator_bench_pgmq"
GROUPS = 1_000
FUNCTIONS = ("read_grouped", "read_grouped_rr", "read_grouped_head")
FULL_DEPTHS = ((10_000, 40), (1_000_000, 8))  # (waiting messages, calls per side and function)
QUICK_DEPTHS = ((10_000, 8), (100_000, 4))
# A side stops calling a function once it spent this long on it; a single call is cancelled
# after TIMEOUT_S (PGMQ's grouped reads aggregate the whole table: minutes at depth).
BUDGET_S = 60.0
TIMEOUT_S = 120

FILL = """
    INSERT INTO pgmq.q_fifo (vt, message, headers)
    SELECT now() - interval '1 second', jsonb_build_object('n', i),
           jsonb_build_object('x-pgmq-group', 'g' || (i % $2))
      FROM generate_series(1, $1) AS i
"""


def pgmq_sql() -> str | None:
    """PGMQ 1.13's SQL from the `pgmq` package, None when it is not installed."""
    try:
        return (files("pgmq.sql") / "pgmq.sql").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return None


async def _prepare(conn: asyncpg.Connection, depth: int) -> None:
    await conn.execute("SELECT pgmq.drop_queue(m.queue_name) FROM pgmq.meta m")
    await conn.execute("SELECT pgmq.create('fifo')")
    await conn.execute(FILL, depth, GROUPS)
    await conn.execute("SELECT pgmq.create_fifo_index('fifo')")
    await conn.execute("VACUUM ANALYZE pgmq.q_fifo")


async def _time_calls(
    conn: asyncpg.Connection, function: str, calls: int, budget_s: float
) -> tuple[list[float], bool]:
    """Times (ms) of up to `calls` calls, stopping once `budget_s` is spent; True when a call
    ran into the connection's statement_timeout (its time then counts as the timeout)."""
    query = f"SELECT * FROM pgmq.{function}('fifo', 0, 10)"
    times: list[float] = []
    while len(times) < calls and sum(times) < budget_s * 1000:
        started = time.perf_counter()
        try:
            rows = await conn.fetch(query)
        except asyncpg.QueryCanceledError:
            times.append((time.perf_counter() - started) * 1000)
            return times, True
        times.append((time.perf_counter() - started) * 1000)
        assert rows, f"{function} found nothing to read"
    return times, False


async def _compare(
    ours: asyncpg.Connection, theirs: asyncpg.Connection, function: str, calls: int
) -> tuple[float, float, bool]:
    """Median ms per call (ours, PGMQ's, whether PGMQ's hit the timeout): the sides take
    turns, a few calls each, after one warm-up call each."""
    times: dict[asyncpg.Connection, list[float]] = {ours: [], theirs: []}
    stopped = {ours: False, theirs: False}
    for conn in (ours, theirs):
        _, stopped[conn] = await _time_calls(conn, function, 1, BUDGET_S)
    per_turn = max(1, calls // 4)
    for turn in range(4):
        for conn in (ours, theirs) if turn % 2 == 0 else (theirs, ours):
            if stopped[conn] or len(times[conn]) >= calls:
                continue
            spent = sum(times[conn]) / 1000
            got, stopped[conn] = await _time_calls(conn, function, per_turn, BUDGET_S - spent)
            times[conn] += got
    return median(times[ours]), median(times[theirs] or [TIMEOUT_S * 1000.0]), stopped[theirs]


async def run(
    server_dsn: str, dsn: str, quick: bool = False, log: Callable[[str], None] = lambda _: None
) -> list[Row]:
    """Grouped-read rows (ours against PGMQ 1.13's SQL); none when PGMQ's SQL is missing."""
    sql = pgmq_sql()
    if sql is None:
        log("fifo benchmark skipped: the pgmq package (PGMQ's SQL) is not installed")
        return []
    theirs_dsn = await recreate_database(server_dsn, PGMQ_DATABASE)
    ours = await asyncpg.connect(dsn)
    theirs = await asyncpg.connect(
        theirs_dsn, server_settings={"statement_timeout": f"{TIMEOUT_S}s"}
    )
    rows: list[Row] = []
    try:
        await theirs.execute(sql)
        for depth, calls in QUICK_DEPTHS if quick else FULL_DEPTHS:
            log(f"fifo: filling both queues with {depth:,} messages in {GROUPS:,} groups")
            await _prepare(ours, depth)
            await _prepare(theirs, depth)
            for function in FUNCTIONS:
                ours_ms, theirs_ms, cut = await _compare(ours, theirs, function, calls)
                log(f"fifo: {function} at {depth:,}: {ours_ms:.2f} ms, PGMQ {theirs_ms:.2f} ms")
                rows.append(
                    Row(
                        section="fifo",
                        workload=f"{function} qty=10, {depth:,} waiting in {GROUPS:,} groups",
                        conns=1,
                        value=ours_ms,
                        baseline=theirs_ms,
                        unit="ms",
                        baseline_form="PGMQ 1.13's SQL, same data, its FIFO index",
                        note=f"PGMQ cancelled at {TIMEOUT_S} s: a lower bound" if cut else "",
                        higher_is_better=False,
                    )
                )
        await ours.execute("SELECT pgmq.drop_queue('fifo')")
    finally:
        await ours.close()
        await theirs.close()
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{PGMQ_DATABASE}" WITH (FORCE)')
        finally:
            await admin.close()
    return rows
