"""Helpers shared by the benchmarks: result rows, timing, percentiles, machine facts, tables.

A benchmark measures a workload and its plain-SQL twin in the same run, on the same server,
and reports both with their ratio, so a number is never read without its baseline.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import asyncpg


@dataclass(frozen=True)
class Row:
    """One line of the results table: a measured `value` beside its `baseline`.

    `ratio` is value / baseline. For throughput (msg/s) higher is better; for latency (ms)
    `higher_is_better` is False and a ratio below 1 means the measured side is faster.
    """

    section: str
    workload: str
    conns: int
    value: float
    baseline: float
    unit: str = "msg/s"
    baseline_form: str = ""
    note: str = ""
    higher_is_better: bool = True

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")


@dataclass
class Facts:
    """What the machine and server looked like during a run."""

    cores: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] | None = None
    server: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"cores: {self.cores}", f"load average before: {_load(self.load_before)}"]
        if self.load_after is not None:
            out.append(f"load average after:  {_load(self.load_after)}")
        out += [f"{name}: {value}" for name, value in self.server.items()]
        return out


def _load(values: tuple[float, float, float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


SERVER_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "wal_level",
    "shared_buffers",
    "max_connections",
)


async def server_facts(conn: asyncpg.Connection) -> dict[str, str]:
    """PostgreSQL version and the settings that decide how fast a commit is."""
    facts: dict[str, str] = {}
    for name in SERVER_SETTINGS:
        facts[name] = str(await conn.fetchval("SELECT current_setting($1)", name))
    return facts


def machine_facts() -> Facts:
    return Facts(cores=os.cpu_count() or 0, load_before=os.getloadavg())


def with_database(dsn: str, database: str) -> str:
    """The same server, another database (URL or key=value DSN)."""
    if "://" in dsn:
        return urlunsplit(urlsplit(dsn)._replace(path="/" + database))
    return f"{dsn} dbname={database}"


async def recreate_database(server_dsn: str, database: str) -> str:
    """Drop and create a scratch database; returns its DSN."""
    admin = await asyncpg.connect(server_dsn)
    try:
        quoted = '"' + database.replace('"', '""') + '"'
        await admin.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {quoted}")
    finally:
        await admin.close()
    return with_database(server_dsn, database)


async def scratch_orchestrator_database(database: str) -> str:
    """A new scratch database on the default server with the queue layer and the store
    installed; returns its DSN."""
    from orchestrator.db import connect, resolve_dsn
    from orchestrator.queue.install import install_dsn
    from orchestrator.store import install

    dsn = await recreate_database(resolve_dsn(None), database)
    await install_dsn(dsn)
    conn = await connect(dsn)
    try:
        await install(conn)
    finally:
        await conn.close()
    return dsn


async def run_workers(
    conns: Sequence[asyncpg.Connection],
    work: Callable[[asyncpg.Connection, int], Awaitable[int]],
) -> tuple[int, float]:
    """Run `work(conn, worker_index)` on each connection at once.

    Returns (items done in total, elapsed seconds).
    """
    started = time.perf_counter()
    done = await asyncio.gather(*(work(conn, i) for i, conn in enumerate(conns)))
    return sum(done), time.perf_counter() - started


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct`-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def split(total: int, parts: int) -> list[int]:
    """`total` items shared as evenly as possible among `parts` workers."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _number(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "-"
    if unit == "ms":
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned text table (also valid Markdown)."""
    header = ["workload", "conns", "measured", "baseline", "ratio", "unit", "baseline (same run)"]
    body = [
        [
            row.workload + (f" ({row.note})" if row.note else ""),
            str(row.conns),
            _number(row.value, row.unit),
            _number(row.baseline, row.unit),
            f"{row.ratio:.2f}" + ("" if row.higher_is_better else " (lower is better)"),
            row.unit,
            row.baseline_form,
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    numeric = {1, 2, 3, 4}

    def render(cells: list[str]) -> str:
        padded = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([render(header), rule, *(render(line) for line in body)])
