"""`python -m bench.scale`: read and hand-off at depth, 10,000 to 10,000,000 waiting messages.

    make bench-scale                                   # 10k, 100k, 1M and 10M, three queue kinds
    python -m bench.scale --sizes 10000,100000 --kinds plain,by_id

For each kind of step queue (`plain`; `by_id`: partitioned by msg_id in partitions of 100,000;
`by_time`: partitioned by enqueued_at in partitions of one minute) and each size, a pipeline
``a -> b`` is created in the scratch database ``orchestrator_scale`` and its step ``a``'s queue is
filled to the size by the queue layer's `send_batch`, set-based: one statement per 50,000 runs,
payloads made by ``generate_series``, headers those `orchestrator.start_runs` gives an entry
message, with a run id and trace id of their own per run (`start_runs` itself makes about 6,000
runs/s here, too slow for 10 million). The time each backlog took is printed, and every queue is
vacuumed and analyzed once full (as autovacuum would, eventually).

Then `--rounds` rounds go over every (kind, size), in reverse order every other round, so that
the load of other processes falls on every size alike; each round does a share of the following,
the queue topped up to its size before each:

- queue layer alone (the async client, its prepared statements): ``read 1 + delete``, one
  message at a time, p50 and p99 per message; ``read 100 + delete``, messages per second;
- pipeline runtime (a `StepConsumer` of step ``a``, one loop, no-op handler, each message
  handed off to ``b``): with `batch_size` 1 the time between two handler starts (one read +
  hand-off + commit each), p50 and p99, and hand-offs per second; with `batch_size` 100 hand-offs
  per second;
- the plans of the read at that depth, after the rounds: every statement `pgmq.read` runs
  (nested ones too), as auto_explain logs it with ANALYZE and BUFFERS (``--explain``).

Each figure is printed beside the same figure at the smallest size of the same kind, measured
in the same run: the aim is every ratio within 20% of 1 (issue 14, "Deep backlogs").
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bench.common import machine_facts, percentile, recreate_database, server_facts
from bench.runtime_bench import _apply, _handler
from orchestrator.db import connect, create_pool
from orchestrator.queue import Queue
from orchestrator.runtime import StepConsumer, StepContext
from orchestrator.spec import Pipeline

DATABASE = "orchestrator_scale"
CHUNK = 50_000
PARTITION_ROWS = "100000"
PARTITION_TIME = "1 minute"

KINDS = ("plain", "by_id", "by_time")

PIPELINE = """
pipeline: {name}
queues: {{notify: false}}
defaults: {{batch_size: 1, visibility_timeout: 60s, timeout: 30s}}
steps:
  a: {{handler: bench:mark, next: b}}
  b: {{handler: bench:mark}}
"""


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Figures:
    """What one (kind, size) measured, summed over the rounds."""

    kind: str
    size: int
    pipeline: Pipeline
    read1_ms: list[float] = field(default_factory=list)
    read100: list[tuple[int, float]] = field(default_factory=list)
    handoff_ms: list[float] = field(default_factory=list)
    handoff1: list[tuple[int, float]] = field(default_factory=list)
    handoff100: list[tuple[int, float]] = field(default_factory=list)
    build_seconds: float = 0.0
    vacuum_seconds: float = 0.0
    plan: str = ""

    @property
    def read1_p50(self) -> float:
        return percentile(self.read1_ms, 50)

    @property
    def read1_p99(self) -> float:
        return percentile(self.read1_ms, 99)

    @property
    def handoff_p50(self) -> float:
        return percentile(self.handoff_ms, 50)

    @property
    def handoff_p99(self) -> float:
        return percentile(self.handoff_ms, 99)

    @property
    def read100_rate(self) -> float:
        return _rate(self.read100)

    @property
    def handoff1_rate(self) -> float:
        return _rate(self.handoff1)

    @property
    def handoff100_rate(self) -> float:
        return _rate(self.handoff100)


def _rate(parts: list[tuple[int, float]]) -> float:
    """Items per second over (items, seconds) parts."""
    seconds = sum(t for _, t in parts)
    return sum(n for n, _ in parts) / seconds if seconds else float("nan")


# -- the pipeline and its backlog ------------------------------------------------------------


async def create(conn: asyncpg.Connection, kind: str, name: str) -> Pipeline:
    """The pipeline ``a -> b`` called `name`, its queues made as `apply` would, step a's first,
    partitioned as `kind` says (creating a queue that exists does nothing)."""
    if kind != "plain":
        interval = PARTITION_ROWS if kind == "by_id" else PARTITION_TIME
        retention = "1000000000" if kind == "by_id" else "1 day"
        await conn.execute(
            "SELECT pgmq.create_partitioned($1, $2, $3)", f"{name}__a", interval, retention
        )
    return await _apply(conn, PIPELINE.format(name=name))


async def depth(conn: asyncpg.Connection, queue: str) -> int:
    return int(await conn.fetchval("SELECT queue_length FROM pgmq.metrics($1)", queue))


_SEND = """
SELECT count(*) FROM pgmq.send_batch($1,
    (SELECT array_agg(jsonb_build_object('i', g)) FROM generate_series(1, $2) g),
    (SELECT array_agg($3::jsonb || jsonb_build_object(
                'run_id', u::text,
                'traceparent', '00-' || replace(u::text, '-', '') || '-'
                               || substr(md5(u::text), 1, 16) || '-01'))
       FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, $2)) runs))
"""
"""One chunk of runs, set-based: payloads from generate_series, the headers `start_runs` gives
an entry message (`$3`, taken from a real start) with a run id and trace of their own."""


async def entry_headers(conn: asyncpg.Connection, pipeline: Pipeline) -> str:
    """The headers `orchestrator.start_runs` gives a run's entry message (JSON text)."""
    queue = pipeline.queue_name("a")
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute("SELECT orchestrator.start_runs($1, ARRAY['{}'::jsonb])", pipeline.name)
        headers = await conn.fetchval(
            f"SELECT headers::text FROM pgmq.{_ident('q_' + queue)} ORDER BY msg_id DESC LIMIT 1"
        )
    finally:
        await tx.rollback()
    return str(headers)


async def top_up(conn: asyncpg.Connection, pipeline: Pipeline, size: int) -> float:
    """Send runs until step a's queue holds `size` messages (chunks of `CHUNK`, `send_batch`
    with payloads and headers made by SQL); seconds it took."""
    queue = pipeline.queue_name("a")
    missing = size - await depth(conn, queue)
    headers = await entry_headers(conn, pipeline)
    started = time.perf_counter()
    sent = 0
    while sent < missing:
        n = min(CHUNK, missing - sent)
        await conn.execute("SELECT pgmq_ext.run_maintenance($1)", queue)  # partitions ahead
        await conn.execute(_SEND, queue, n, headers)
        sent += n
    return time.perf_counter() - started


async def vacuum(conn: asyncpg.Connection, queue: str) -> float:
    started = time.perf_counter()
    await conn.execute(f"VACUUM (ANALYZE) pgmq.{_ident('q_' + queue)}")
    return time.perf_counter() - started


def _ident(name: str) -> str:
    """A queue table's name, quoted (queue names are validated by the queue layer)."""
    return '"' + name.replace('"', '""') + '"'


# -- the queue layer alone ---------------------------------------------------------------------


async def read_one(conn: asyncpg.Connection, queue: str, count: int) -> list[float]:
    """Milliseconds of each read 1 + delete, one message at a time."""
    client = Queue(conn)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        messages = await client.read(queue, 30, 1)
        await client.delete(queue, [m.msg_id for m in messages])
        times.append((time.perf_counter() - started) * 1000)
    return times


async def read_hundred(conn: asyncpg.Connection, queue: str, count: int) -> tuple[int, float]:
    """(messages, seconds) of read 100 + delete until `count` messages."""
    client = Queue(conn)
    done = 0
    started = time.perf_counter()
    while done < count:
        messages = await client.read(queue, 30, 100)
        await client.delete(queue, [m.msg_id for m in messages])
        done += len(messages)
    return done, time.perf_counter() - started


# -- the pipeline runtime -----------------------------------------------------------------------


async def hand_offs(
    pool: asyncpg.Pool, pipeline: Pipeline, batch: int, count: int
) -> tuple[tuple[int, float], list[float]]:
    """Run one consumer loop of step a with `batch_size` `batch` until its handler started
    `count` times: ((hand-offs, seconds), milliseconds between consecutive handler starts)."""
    starts: list[float] = []
    stopping = asyncio.Event()

    async def mark(payload: dict[str, Any], ctx: StepContext) -> None:
        starts.append(time.perf_counter())
        if len(starts) >= count:
            stopping.set()

    handler = _handler(mark)
    step = pipeline.step("a").model_copy(update={"batch_size": batch})
    await StepConsumer(pool, pipeline, step, handler, concurrency=1).run(stopping)
    elapsed = starts[count - 1] - starts[0]
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(starts[:count])]
    return (count - 1, elapsed), gaps


async def explain_read(conn: asyncpg.Connection, queue: str) -> str:
    """The statements `pgmq.read(queue, 30, 1)` runs, each with its plan as PostgreSQL executed
    it (auto_explain with ANALYZE and BUFFERS, nested statements included), after six reads in
    the same session (past the plan cache's custom plans); all rolled back."""
    messages: list[str] = []

    def listen(_conn: Any, message: Any) -> None:
        messages.append(str(message))

    read = "SELECT msg_id FROM pgmq.read($1, 30, 1)"
    tx = conn.transaction()
    await tx.start()
    try:
        for _ in range(6):
            await conn.fetch(read, queue)
        await conn.execute(
            "LOAD 'auto_explain'; SET LOCAL auto_explain.log_min_duration = 0;"
            " SET LOCAL auto_explain.log_nested_statements = on;"
            " SET LOCAL auto_explain.log_analyze = on; SET LOCAL auto_explain.log_buffers = on;"
            " SET LOCAL client_min_messages = log"
        )
        conn.add_log_listener(listen)
        try:
            await conn.fetch(read, queue)
            await asyncio.sleep(0.05)  # log listeners are called soon after
        finally:
            conn.remove_log_listener(listen)
    finally:
        await tx.rollback()
    return "\n".join(m for m in messages if "plan:" in m)


# -- one (kind, size) --------------------------------------------------------------------------


async def prepare(conn: asyncpg.Connection, f: Figures) -> None:
    """Fill step a's queue of `f` to its size and vacuum it."""
    queue = f.pipeline.queue_name("a")
    f.build_seconds = await top_up(conn, f.pipeline, f.size)
    f.vacuum_seconds = await vacuum(conn, queue)
    _log(
        f"{f.kind} at {f.size:,}: backlog {f.build_seconds:.1f} s,"
        f" vacuum {f.vacuum_seconds:.1f} s (load {os.getloadavg()[0]:.1f})"
    )


async def measure_round(
    dsn: str, conn: asyncpg.Connection, f: Figures, args: argparse.Namespace
) -> None:
    """One round of every measurement of `f`, its backlog topped up to its size before each."""
    queue = f.pipeline.queue_name("a")
    samples = max(2, args.samples // args.rounds)
    batched = max(200, min(f.size // 2, args.batch_messages) // args.rounds)
    await top_up(conn, f.pipeline, f.size)
    f.read1_ms += await read_one(conn, queue, samples)
    await top_up(conn, f.pipeline, f.size)
    f.read100.append(await read_hundred(conn, queue, batched))
    pool = await create_pool(dsn, min_size=1, max_size=4)
    try:
        await top_up(conn, f.pipeline, f.size)
        rate, gaps = await hand_offs(pool, f.pipeline, 1, samples)
        f.handoff1.append(rate)
        f.handoff_ms += gaps
        await top_up(conn, f.pipeline, f.size)
        f.handoff100.append((await hand_offs(pool, f.pipeline, 100, batched))[0])
    finally:
        await pool.close()
    await top_up(conn, f.pipeline, f.size)
    await conn.execute("SELECT pgmq.purge_queue($1)", f.pipeline.queue_name("b"))


def _line(f: Figures) -> str:
    return (
        f"read1+delete p50 {f.read1_p50:.2f} ms p99 {f.read1_p99:.2f} ms;"
        f" read100+delete {f.read100_rate:,.0f} msg/s;"
        f" hand-off p50 {f.handoff_p50:.2f} ms p99 {f.handoff_p99:.2f} ms,"
        f" {f.handoff1_rate:,.0f}/s; batch 100 {f.handoff100_rate:,.0f}/s"
    )


COLUMNS = (
    ("read 1+delete p50 ms", "read1_p50", False),
    ("p99 ms", "read1_p99", False),
    ("read 100+delete msg/s", "read100_rate", True),
    ("hand-off p50 ms", "handoff_p50", False),
    ("p99 ms", "handoff_p99", False),
    ("hand-offs/s b1", "handoff1_rate", True),
    ("hand-offs/s b100", "handoff100_rate", True),
)


def table(results: list[Figures]) -> str:
    """One row per (kind, size): each figure and, in brackets, its ratio to the smallest size
    of the same kind (for latency, smaller/larger inverted so that > 1 is always worse)."""
    header = ["kind", "waiting", "backlog s", *(c[0] for c in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    first: dict[str, Figures] = {}
    for f in results:
        base = first.setdefault(f.kind, f)
        cells = [f.kind, f"{f.size:,}", f"{f.build_seconds:.0f}"]
        for _, attr, higher_is_better in COLUMNS:
            value, ref = getattr(f, attr), getattr(base, attr)
            worse = ref / value if higher_is_better else value / ref
            number = f"{value:,.2f}" if not higher_is_better else f"{value:,.0f}"
            cells.append(number if f is base else f"{number} ({worse:.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    from orchestrator.db import resolve_dsn
    from orchestrator.queue.install import install_dsn
    from orchestrator.store import install

    facts = machine_facts()
    dsn = await recreate_database(resolve_dsn(None), args.database)
    await install_dsn(dsn)
    conn = await connect(dsn)
    results: list[Figures] = []
    started = time.perf_counter()
    try:
        await install(conn)
        facts.server = await server_facts(conn)
        for kind in args.kinds:
            for i, size in enumerate(args.sizes):
                pipeline = await create(conn, kind, f"deep_{kind}_{i}")
                results.append(Figures(kind, size, pipeline))
        for f in results:
            await prepare(conn, f)
        for r in range(args.rounds):
            _log(f"round {r + 1} of {args.rounds} (load {os.getloadavg()[0]:.1f})")
            for f in results if r % 2 == 0 else reversed(results):
                await measure_round(dsn, conn, f, args)
        for f in results:
            _log(f"  {f.kind} at {f.size:,}: {_line(f)}")
            if args.explain:
                f.plan = await explain_read(conn, f.pipeline.queue_name("a"))
    finally:
        await conn.close()
        if not args.keep:
            admin = await connect(resolve_dsn(None))
            try:
                await admin.execute(f"DROP DATABASE IF EXISTS {_ident(args.database)} WITH (FORCE)")
            finally:
                await admin.close()
    facts.load_after = os.getloadavg()
    print(f"python -m bench.scale {' '.join(args.argv)}".rstrip())
    print(f"took {time.perf_counter() - started:.0f} s")
    print("\n".join(facts.lines()))
    print()
    print(table(results))
    for f in results if args.explain else ():
        print(f"\nread plan, {f.kind} at {f.size:,} waiting:\n{f.plan}")
    return 0


def _ints(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--sizes", type=_ints, default=[10_000, 100_000, 1_000_000, 10_000_000])
    parser.add_argument(
        "--kinds", type=lambda t: [k for k in t.split(",") if k], default=list(KINDS)
    )
    parser.add_argument("--samples", type=int, default=2000, help="messages one at a time")
    parser.add_argument("--batch-messages", type=int, default=20_000, help="messages in batches")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over every (kind, size)")
    parser.add_argument("--explain", action="store_true", help="print the read's plan per size")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--database", default=DATABASE, help="the scratch database (dropped first)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds {', '.join(sorted(unknown))}: use {', '.join(KINDS)}")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
