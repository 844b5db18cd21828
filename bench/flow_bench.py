"""Flow-control benchmark: what each limit costs per message, and what a waiting worker costs.

``python -m bench.flow_bench [--runs N] [--idle SECONDS]`` on a scratch database (the embedded
server unless ``DATABASE_URL`` is set):

- a 2-step chain (a -> b) of no-op handlers, batch_size 1, concurrency 4 per step, in one
  process, once without limits and once per limit on step b, each set so it never binds
  (rate 1,000,000/s, max_in_flight 1000, group_by a key unique per message, max_waiting
  1,000,000): hand-offs per second, and the extra microseconds per hand-off the limit costs;
- a consumer held back by a limit (a rate of 1/h with its token spent; max_in_flight 1 with the
  slot held by someone else for an hour; a paused step), wired to a LISTEN connection as a
  worker wires it, for `--idle` seconds: the CPU seconds the process
  used, the statements its pool sent per second (counted by asyncpg's query logger), and the
  transactions the database counted per second while it waited (the count over the same time
  with nobody waiting is subtracted: autovacuum and statistics also count; noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from bench.runtime_bench import _apply, _handler, handoffs_per_second, noop
from orchestrator.db import connect, create_pool
from orchestrator.runtime import StepConsumer
from orchestrator.runtime.flow import FLOW_CHANNEL
from orchestrator.runtime.wakeup import WakeupListener

CHAIN = """
pipeline: {name}
defaults: {{batch_size: 1, concurrency: 4, visibility_timeout: 60s, timeout: 30s}}
steps:
  a: {{handler: bench:noop, next: b}}
  b: {{handler: bench:noop{limit}}}
"""

LIMITS = {
    "none": "",
    "rate_limit": ", rate_limit: 1000000/s",
    "max_in_flight": ", max_in_flight: 1000",
    "group_by": ", group_by: i",
    "max_waiting": ", max_waiting: 1000000",
}

IDLE = {
    "rate_limit 1/h, token spent": ", rate_limit: 1/h",
    "max_in_flight 1, slot held elsewhere": ", max_in_flight: 1",
    "paused": "",
}


async def throughput(dsn: str, name: str, limit: str, runs: int) -> float:
    """Hand-offs per second of both steps over `runs` runs."""
    yaml_text = CHAIN.format(name=name, limit=limit)
    return await handoffs_per_second(dsn, yaml_text, runs, concurrency=None)


async def idle_cost(
    dsn: str, name: str, limit: str, seconds: float, how: str
) -> tuple[float, float, float]:
    """(CPU seconds per second, transactions per second, statements its pool sent per second)
    of a consumer held back by a limit."""
    conn = await connect(dsn)
    try:
        pipeline = await _apply(conn, CHAIN.format(name=name, limit=limit))
        if how.startswith("rate"):
            await conn.execute("SELECT orchestrator.take_tokens($1, 1.0 / 3600, 1, 1)", f"{name}.b")
        elif how.startswith("max_in_flight"):
            await conn.execute(
                "SELECT orchestrator.take_slots($1, 1, 1, $2, 3600)", f"{name}.b", uuid.uuid4()
            )
        else:
            await conn.execute("SELECT orchestrator.pause($1, 'b')", name)
        await conn.execute(
            "SELECT pgmq.send_batch($1, ARRAY(SELECT '{}'::jsonb FROM generate_series(1, 10)))",
            pipeline.queue_name("b"),
        )
        quiet = await _xacts(conn)
        await asyncio.sleep(seconds)  # what the database counts with nobody waiting
        quiet = await _xacts(conn) - quiet - 2
        sent = [0]

        async def count_statements(c: Any) -> None:
            def counted(_query: Any) -> None:
                sent[0] += 1

            c.add_query_logger(counted)

        pool = await create_pool(dsn, min_size=5, max_size=6, init=count_statements)
        try:
            consumer = StepConsumer(pool, pipeline, pipeline.step("b"), _handler(noop))
            stopping = asyncio.Event()
            # wired as a worker wires it: one LISTEN connection for inserts and flow control
            listener = WakeupListener(dsn, [consumer])
            listener.also_listen(FLOW_CHANNEL, consumer.flow.wake)
            consumer.flow.notified = True  # as the worker sets it when it listens
            listening = asyncio.create_task(listener.run(stopping))
            await listener.listening.wait()
            task = asyncio.create_task(consumer.run(stopping))
            await asyncio.sleep(2)  # settled into waiting
            before, statements = await _xacts(conn), sent[0]
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            after, statements = await _xacts(conn), sent[0] - statements
            stopping.set()
            await task
            await listening
            handled = await conn.fetchval(f"SELECT count(*) FROM pgmq.a_{pipeline.queue_name('b')}")
            assert handled == 0, f"{handled} messages got past the limit"
        finally:
            await pool.close()
    finally:
        await conn.close()
    # minus our own two reads of the counter, and what the database counted without us
    return cpu / wall, (after - before - 2 - quiet) / wall, statements / wall


async def _xacts(conn: Any) -> int:
    await conn.execute("SELECT pg_stat_force_next_flush()")
    value: int = await conn.fetchval(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database"
        " WHERE datname = current_database()"
    )
    return value


async def _main(argv: Sequence[str] | None) -> int:
    from bench.common import scratch_orchestrator_database

    parser = argparse.ArgumentParser(prog="python -m bench.flow_bench")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--only-idle", action="store_true", help="skip the throughput part")
    args = parser.parse_args(argv)
    dsn = await scratch_orchestrator_database("orchestrator_flow_bench")
    plain = None
    for index, (limit, text) in enumerate({} if args.only_idle else LIMITS.items()):
        rate = await throughput(dsn, f"chain{index}", text, args.runs)
        plain = plain or rate
        extra = (1 / rate - 1 / plain) * 1e6
        print(f"{limit:>14}: {rate:8,.0f} hand-offs/s, {extra:+6.0f} us per hand-off")
    for index, (how, text) in enumerate(IDLE.items()):
        cpu, xacts, statements = await idle_cost(dsn, f"idle{index}", text, args.idle, how)
        print(
            f"waiting ({how}): {cpu * 100:.2f}% of a core, {statements:.2f} statements/s"
            f" from its pool, {xacts:.2f} transactions/s in the database"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1:])))
