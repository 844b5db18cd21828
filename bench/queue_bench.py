"""Queue benchmark: the queue layer against plain SQL.

Every workload runs once per side and repeat, on the same connections:

- queue:     `orchestrator.queue.Queue` on the queue `bench`; its hot operations run the queue
             layer's own statements (`pgmq_ext.statements()`), prepared;
- functions: the same client with `statements=False` on the queue `bench_fn`, so every call is
             a `pgmq.*` function call: what a SQL caller (and PGMQ's API) pays;
- plain:     hand-written SQL on a plain table with the same columns and indexes (msg_id
             identity primary key, an index on vt; default storage settings), as prepared
             statements:

  - send:          INSERT ... VALUES (...) RETURNING msg_id
  - send_batch:    INSERT ... SELECT ... FROM unnest($1::jsonb[]) RETURNING msg_id
  - read + delete: UPDATE ... SET vt = ..., read_ct = read_ct + 1 WHERE msg_id =
                   (SELECT ... ORDER BY msg_id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING ...
                   (several: msg_id = ANY (ARRAY(SELECT ... LIMIT n ...)));
                   then DELETE ... WHERE msg_id = $1 (or = ANY ($1))
  - pop:           DELETE ... WHERE msg_id = (SELECT ... LIMIT 1 FOR UPDATE SKIP LOCKED)
                   RETURNING ... (several: = ANY (ARRAY(...)))

The tables exist side by side, each fresh and, for consuming workloads, prefilled, VACUUM
ANALYZEd and checkpointed first. A workload then runs in rounds: a chunk of steps on every
connection for one side, then the same for the others, in alternating order. Each side's rate
is its messages over its time summed over all rounds, so a burst of load from elsewhere on the
machine hits every side alike. The producers + consumers run (queue and plain only) alternates
whole runs and reports medians; the churn run alternates slices of 3,000 messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.common import Row, median, percentile, run_workers, split
from orchestrator.db import connect
from orchestrator.queue import Queue

SECTION = "queue"
QUEUE = "bench"
QUEUE_FN = "bench_fn"
PLAIN = "bench_plain"
FUNCTIONS_NOTE = "via pgmq.* functions"

PLAIN_DDL = f"""
DROP TABLE IF EXISTS {PLAIN};
CREATE TABLE {PLAIN} (
    msg_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    read_ct integer NOT NULL DEFAULT 0,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    last_read_at timestamptz,
    vt timestamptz NOT NULL,
    message jsonb,
    headers jsonb
);
CREATE INDEX ON {PLAIN} (vt);
"""
COLUMNS = "msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers"
P_SEND = f"INSERT INTO {PLAIN} (vt, message) VALUES (clock_timestamp(), $1::jsonb) RETURNING msg_id"
P_SEND_BATCH = (
    f"INSERT INTO {PLAIN} (vt, message) SELECT now(), m FROM unnest($1::jsonb[]) AS m "
    "RETURNING msg_id"
)
_PICK = (
    f"SELECT msg_id FROM {PLAIN} WHERE vt <= clock_timestamp() ORDER BY msg_id LIMIT $1 "
    "FOR UPDATE SKIP LOCKED"
)
# One message: `msg_id = (SELECT ...)`; several: `msg_id = ANY (ARRAY(SELECT ...))`.
_ONE, _MANY = f"= ({_PICK})", f"= ANY (ARRAY({_PICK}))"
_READ = (
    f"UPDATE {PLAIN} SET vt = clock_timestamp() + interval '30 seconds', "
    "read_ct = read_ct + 1, last_read_at = clock_timestamp() WHERE msg_id {pick} "
    f"RETURNING {COLUMNS}"
)
P_READ_ONE, P_READ_MANY = _READ.format(pick=_ONE), _READ.format(pick=_MANY)
P_DELETE = f"DELETE FROM {PLAIN} WHERE msg_id = $1"
P_DELETE_MANY = f"DELETE FROM {PLAIN} WHERE msg_id = ANY ($1::bigint[])"
_POP = f"DELETE FROM {PLAIN} WHERE msg_id {{pick}} RETURNING {COLUMNS}"
P_POP_ONE, P_POP_MANY = _POP.format(pick=_ONE), _POP.format(pick=_MANY)

PLAIN_FORMS = {
    "send": "INSERT ... RETURNING",
    "send_batch": "INSERT ... SELECT unnest($1::jsonb[])",
    "read_delete": "UPDATE ... SKIP LOCKED; DELETE",
    "pop": "DELETE ... SKIP LOCKED RETURNING",
    "cycle": "INSERT; UPDATE ... SKIP LOCKED; DELETE",
}


def payload(n: int) -> dict[str, Any]:
    """A typical small job message (~80 bytes of JSON)."""
    return {"job_type": "sap_sync", "entity": "work_order", "entity_id": n}


@dataclass(frozen=True)
class Sizes:
    single: int  # messages for one-message-per-call workloads
    batched: int  # messages for batch workloads
    churn: int  # messages through one queue in the churn run
    mixed: int  # messages in the producers + consumers run
    rounds: int  # alternations of queue and plain within one workload
    repeats: int  # runs of the producers + consumers workload per side


FULL = Sizes(single=8000, batched=100_000, churn=300_000, mixed=3000, rounds=10, repeats=5)
QUICK = Sizes(single=800, batched=10_000, churn=30_000, mixed=600, rounds=4, repeats=1)


class Side:
    """One side of a comparison: a queue through the client, or the plain table."""

    def __init__(self, name: str, q: Queue, queue: str = QUEUE) -> None:
        self.name = name
        self.q = q
        self.queue = queue

    @property
    def is_queue(self) -> bool:
        return self.name != "plain"

    async def reset(self, conn: asyncpg.Connection) -> None:
        if self.is_queue:
            await self.q.drop(self.queue, conn=conn)
            await self.q.create(self.queue, conn=conn)
        else:
            await conn.execute(PLAIN_DDL)

    async def drop(self, conn: asyncpg.Connection) -> None:
        if self.is_queue:
            await self.q.drop(self.queue, conn=conn)
        else:
            await conn.execute(f"DROP TABLE IF EXISTS {PLAIN}")

    async def prefill(self, conn: asyncpg.Connection, count: int) -> None:
        for start in range(0, count, 1000):
            batch = [payload(n) for n in range(start, min(count, start + 1000))]
            await self.send_batch(conn, batch)
        table = f"pgmq.q_{self.queue}" if self.is_queue else PLAIN
        await conn.execute(f"VACUUM ANALYZE {table}")

    async def send(self, conn: asyncpg.Connection, message: Any) -> int:
        if self.is_queue:
            return await self.q.send(self.queue, message, conn=conn)
        msg_id: int = await conn.fetchval(P_SEND, message)
        return msg_id

    async def send_batch(self, conn: asyncpg.Connection, messages: list[Any]) -> list[int]:
        if self.is_queue:
            return await self.q.send_batch(self.queue, messages, conn=conn)
        return [r[0] for r in await conn.fetch(P_SEND_BATCH, messages)]

    async def read(self, conn: asyncpg.Connection, qty: int) -> list[tuple[int, Any]]:
        """(msg_id, message) of up to `qty` messages, hidden for 30 s."""
        if self.is_queue:
            messages = await self.q.read(self.queue, 30, qty, conn=conn)
            return [(m.msg_id, m.message) for m in messages]
        rows = await conn.fetch(P_READ_ONE if qty == 1 else P_READ_MANY, qty)
        return [(r[0], r[5]) for r in rows]

    async def delete(self, conn: asyncpg.Connection, ids: list[int]) -> None:
        if self.is_queue:
            if len(ids) == 1:
                await self.q.delete(self.queue, ids[0], conn=conn)
            else:
                await self.q.delete(self.queue, ids, conn=conn)
        elif len(ids) == 1:
            await conn.execute(P_DELETE, ids[0])
        else:
            await conn.execute(P_DELETE_MANY, ids)

    async def pop(self, conn: asyncpg.Connection, qty: int) -> int:
        if self.is_queue:
            return len(await self.q.pop(self.queue, qty, conn=conn))
        return len(await conn.fetch(P_POP_ONE if qty == 1 else P_POP_MANY, qty))


# --- workloads: one step of work on one connection, returning the messages it handled -----

Step = Callable[[Side, asyncpg.Connection], Awaitable[int]]


@dataclass(frozen=True)
class Workload:
    """`step` is one call (or one send/read/delete cycle); `per_step` the messages it
    handles; `consumes`: each side's table is prefilled with what the steps will take."""

    step: Step
    per_step: int = 1
    consumes: bool = False


def send_one() -> Workload:
    message = payload(1)

    async def step(side: Side, conn: asyncpg.Connection) -> int:
        await side.send(conn, message)
        return 1

    return Workload(step)


def send_batches(size: int) -> Workload:
    messages = [payload(n) for n in range(size)]

    async def step(side: Side, conn: asyncpg.Connection) -> int:
        return len(await side.send_batch(conn, messages))

    return Workload(step, size)


def read_delete(qty: int) -> Workload:
    async def step(side: Side, conn: asyncpg.Connection) -> int:
        ids = [msg_id for msg_id, _ in await side.read(conn, qty)]
        if ids:
            await side.delete(conn, ids)
        return len(ids)

    return Workload(step, qty, consumes=True)


def pop(qty: int) -> Workload:
    async def step(side: Side, conn: asyncpg.Connection) -> int:
        return await side.pop(conn, qty)

    return Workload(step, qty, consumes=True)


def cycle() -> Workload:
    """One message through its whole life: send, read, delete."""
    message = payload(1)

    async def step(side: Side, conn: asyncpg.Connection) -> int:
        await side.send(conn, message)
        got: list[tuple[int, Any]] = []
        while not got:  # another worker may have taken it; one is always left
            got = await side.read(conn, 1)
        await side.delete(conn, [got[0][0]])
        return 1

    return Workload(step)


@dataclass
class MixedResult:
    messages: int
    seconds: float
    latencies_ms: list[float]


async def mixed(
    side: Side, producers: list[asyncpg.Connection], consumers: list[asyncpg.Connection], total: int
) -> MixedResult:
    """Producers send one message per call while consumers read 10 at a time and delete them;
    latency is from the start of a send to the end of the delete that removed the message."""
    shares = split(total, len(producers))
    remaining = [len(producers)]
    latencies: list[float] = []

    async def produce(conn: asyncpg.Connection, i: int) -> int:
        for n in range(shares[i]):
            await side.send(conn, {"sent": time.perf_counter(), "n": n})
        remaining[0] -= 1
        return shares[i]

    async def consume_all(conn: asyncpg.Connection, i: int) -> int:
        done = 0
        while True:
            got = await side.read(conn, 10)
            if not got:
                if remaining[0] == 0:
                    return done
                await asyncio.sleep(0.001)
                continue
            await side.delete(conn, [msg_id for msg_id, _ in got])
            now = time.perf_counter()
            latencies.extend((now - message["sent"]) * 1000 for _, message in got)
            done += len(got)

    started = time.perf_counter()
    await asyncio.gather(
        *(produce(c, i) for i, c in enumerate(producers)),
        *(consume_all(c, i) for i, c in enumerate(consumers)),
    )
    return MixedResult(total, time.perf_counter() - started, latencies)


async def churn_slice(side: Side, conn: asyncpg.Connection, count: int) -> float:
    """Send 100, read 100, delete them, until `count` messages went through; the seconds."""
    messages = [payload(n) for n in range(100)]
    started = time.perf_counter()
    for _ in range(count // 100):
        await side.send_batch(conn, messages)
        ids = [msg_id for msg_id, _ in await side.read(conn, 100)]
        await side.delete(conn, ids)
    return time.perf_counter() - started


# --- running ------------------------------------------------------------------------------


class Bench:
    def __init__(self, dsn: str, sizes: Sizes, log: Callable[[str], None]) -> None:
        self.dsn = dsn
        self.sizes = sizes
        self.log = log
        self.conns: list[asyncpg.Connection] = []
        self.rows: list[Row] = []

    async def __aenter__(self) -> Bench:
        self.conns = [await connect(self.dsn) for _ in range(8)]
        queue = Side("queue", Queue(self.conns[0]))
        functions = Side("functions", Queue(self.conns[0], statements=False), QUEUE_FN)
        plain = Side("plain", queue.q)
        self.all_sides = [queue, functions, plain]
        self.sides = [queue, plain]  # for the producers + consumers and churn runs
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn in self.conns:
            await conn.close()

    def _order(self, turn: int, sides: list[Side] | None = None) -> list[Side]:
        sides = self.sides if sides is None else sides
        return sides if turn % 2 == 0 else sides[::-1]

    async def _fresh(self, side: Side) -> None:
        await side.reset(self.conns[0])
        await self.conns[0].execute("CHECKPOINT")

    async def compare(
        self, name: str, form: str, conns: int, workload: Workload, total: int
    ) -> list[Row]:
        """About `total` messages per side, in rounds: each round runs a chunk of steps on
        every connection for each side in turn (the order alternating), so all sides see the
        same machine load; rate = messages / time summed over the rounds. One row for the
        client and one for the functions, each against plain SQL."""
        rounds = self.sizes.rounds
        steps = max(1, total // (workload.per_step * rounds * conns))
        sides = self.all_sides
        for side in sides:
            await side.reset(self.conns[0])
            if workload.consumes:
                need = (rounds * steps + 2) * conns * workload.per_step
                await side.prefill(self.conns[0], need)
        for side in sides:  # warm up: prepare statements, compile functions (uncounted)
            await asyncio.gather(*(workload.step(side, conn) for conn in self.conns[:conns]))
        await self.conns[0].execute("CHECKPOINT")
        done = dict.fromkeys((side.name for side in sides), 0)
        spent = dict.fromkeys((side.name for side in sides), 0.0)
        for turn in range(rounds):
            for side in self._order(turn, sides):

                async def work(conn: asyncpg.Connection, i: int, side: Side = side) -> int:
                    return sum([await workload.step(side, conn) for _ in range(steps)])

                count, seconds = await run_workers(self.conns[:conns], work)
                done[side.name] += count
                spent[side.name] += seconds
        plain = done["plain"] / spent["plain"]
        rows = [
            Row(
                SECTION,
                name,
                conns,
                done[side] / spent[side],
                plain,
                baseline_form=PLAIN_FORMS[form],
                note="" if side == "queue" else FUNCTIONS_NOTE,
            )
            for side in ("queue", "functions")
        ]
        self.log(
            f"  {name} x{conns}: {rows[0].value:,.0f} (functions {rows[1].value:,.0f}) "
            f"vs {plain:,.0f} msg/s"
        )
        self.rows.extend(rows)
        for side in sides:  # keep the database small for the next workload
            await side.drop(self.conns[0])
        return rows

    async def compare_mixed(self, producers: int, consumers: int) -> None:
        results: dict[str, list[MixedResult]] = {"queue": [], "plain": []}
        for repeat in range(self.sizes.repeats):
            for side in self._order(repeat):
                await self._fresh(side)
                pro = self.conns[:producers]
                con = self.conns[producers : producers + consumers]
                results[side.name].append(await mixed(side, pro, con, self.sizes.mixed))
        name = f"{producers} producers (1 msg/call) + {consumers} consumers (read 10 + delete)"
        conns = producers + consumers

        def stat(side: str, fn: Callable[[MixedResult], float]) -> float:
            return median([fn(r) for r in results[side]])

        def throughput(r: MixedResult) -> float:
            return r.messages / r.seconds

        def p50(r: MixedResult) -> float:
            return percentile(r.latencies_ms, 50)

        def p99(r: MixedResult) -> float:
            return percentile(r.latencies_ms, 99)

        form = "INSERT; UPDATE ... SKIP LOCKED; DELETE = ANY"
        for label, fn, unit in (
            ("", throughput, "msg/s"),
            (" p50", p50, "ms"),
            (" p99", p99, "ms"),
        ):
            row = Row(
                SECTION,
                name + (f" latency{label}" if label else ""),
                conns,
                stat("queue", fn),
                stat("plain", fn),
                unit=unit,
                baseline_form=form,
                note="send->delete" if label else "",
                higher_is_better=unit != "ms",
            )
            self.rows.append(row)
            self.log(f"  {row.workload}: {row.value:,.2f} vs {row.baseline:,.2f} {unit}")

    async def compare_churn(self) -> None:
        """Both tables churn side by side in sub-slices of 3,000 messages (alternating which
        goes first), so a change of machine load hits both alike; ten slices are reported."""
        total, slices, sub = self.sizes.churn, 10, 3000
        per_slice = total // slices
        spent: dict[str, list[float]] = {"queue": [0.0] * slices, "plain": [0.0] * slices}
        for side in self.sides:
            await self._fresh(side)
            await churn_slice(side, self.conns[0], 300)  # warm-up, uncounted
        for turn in range(total // sub):
            for side in self._order(turn):
                seconds = await churn_slice(side, self.conns[0], sub)
                spent[side.name][turn * sub // per_slice] += seconds
        rates = {name: [per_slice / t for t in times] for name, times in spent.items()}
        form = "INSERT unnest; UPDATE ... SKIP LOCKED; DELETE = ANY"
        for label, index in (("first", 0), ("last", slices - 1)):
            start = index * per_slice
            row = Row(
                SECTION,
                f"churn: send 100 + read 100 + delete, {label} {per_slice:,} of {total:,}",
                1,
                rates["queue"][index],
                rates["plain"][index],
                baseline_form=form,
                note=f"msgs {start:,}-{start + per_slice:,}",
            )
            self.rows.append(row)
            self.log(f"  {row.workload}: {row.value:,.0f} vs {row.baseline:,.0f} msg/s")
        for name, values in rates.items():
            listed = ", ".join(f"{v:,.0f}" for v in values)
            self.log(f"  churn slices, {name}: {listed} (last/first {values[-1] / values[0]:.2f})")


async def run(
    dsn: str, quick: bool = False, log: Callable[[str], None] = lambda line: None
) -> list[Row]:
    """Measure every queue workload against its plain-SQL twin on the database `dsn` (which
    must hold the queue layer); returns the rows of the results table."""
    sizes = QUICK if quick else FULL
    async with Bench(dsn, sizes, log) as bench:
        single, batched = sizes.single, sizes.batched
        for conns in (1, 4, 8):
            await bench.compare("send (1 msg per call)", "send", conns, send_one(), single)
        for conns in (1, 2):
            await bench.compare(
                "send_batch of 100", "send_batch", conns, send_batches(100), batched
            )
        for conns in (1, 4):
            await bench.compare("read qty=1 + delete", "read_delete", conns, read_delete(1), single)
        await bench.compare("pop qty=1", "pop", 4, pop(1), single)
        await bench.compare(
            "read qty=100 + delete many", "read_delete", 1, read_delete(100), batched
        )
        await bench.compare("pop qty=100", "pop", 1, pop(100), batched)
        for conns in (1, 4):
            await bench.compare(
                "cycle: send + read + delete, 1 msg", "cycle", conns, cycle(), single
            )
        await bench.compare_mixed(2, 2)
        await bench.compare_churn()
        for side in bench.all_sides:
            await side.drop(bench.conns[0])
    return bench.rows


def baseline(rows: list[Row]) -> dict[str, float]:
    """Plain-SQL single-message figures (msg/s) for other benchmarks to compare against."""
    wanted = {
        ("send (1 msg per call)", 1): "send_1",
        ("read qty=1 + delete", 1): "read_delete_1",
        ("cycle: send + read + delete, 1 msg", 1): "cycle_1",
        ("cycle: send + read + delete, 1 msg", 4): "cycle_4",
    }
    return {
        wanted[(row.workload, row.conns)]: row.baseline
        for row in rows
        if (row.workload, row.conns) in wanted and not row.note
    }
