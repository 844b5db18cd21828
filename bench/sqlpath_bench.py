"""The queue API called as SQL functions, beside PGMQ 1.13's own SQL.

What a SQL caller runs (another client library, a trigger, a `pg_cron` job): `SELECT * FROM
pgmq.read('q', 30, 1)`, `SELECT pgmq.delete('q', 7)`, ... Three sides on one server:

- ours:    the benchmark's database, queue `sqlpath`: the public functions dispatch to the
           queue's own functions (static SQL, plans cached per session);
- dynamic: the same database, queue `sqlpath_dyn`, whose own functions are dropped, so every
           call takes the dynamic path (a statement built and planned per call): the SQL path
           as it was before the queue functions, measured again in the same run;
- PGMQ:    `orchestrator_bench_pgmq`, created anew with PGMQ 1.13's SQL as the `pgmq` Python
           package ships it, queue `sqlpath`;
- floor:   client way only: the same autocommit round trips (one statement per call) each
           doing the least a write can do, a one-row UPDATE of a row of its connection's own,
           so each still waits for its commit's WAL flush. What no function can go below: a
           side's rate over the floor's is the share of the floor it reaches.

Each workload runs two ways:
- client: asyncpg connections call the functions one statement per call, each its own
  transaction, with the server's settings (so every write waits for its WAL flush);
- in server: one `DO` block per chunk loops over the calls, committing after each
  read + ack (as a procedure or a `pg_cron` job does), with `synchronous_commit = off` on that
  session: no network and no flush wait, so what remains is mostly the functions' own cost.

Tables are prefilled, VACUUM ANALYZEd and checkpointed first; each side is warmed up
(functions compiled, plans cached) outside the timing. A workload runs in rounds: one chunk
per side in turn, the order alternating, so load from elsewhere hits all sides alike; a side's
rate is its messages over its time summed over the rounds. Rows compare ours with PGMQ, and
ours with the dynamic path (before/after).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from bench.common import Row, recreate_database, run_workers
from bench.fifo_bench import PGMQ_DATABASE, pgmq_sql

SECTION = "sqlpath"
QUEUE = "sqlpath"
QUEUE_DYNAMIC = "sqlpath_dyn"
MESSAGE = json.dumps({"job_type": "sap_sync", "entity": "work_order", "entity_id": 1})


@dataclass(frozen=True)
class Side:
    """`name` "ours" is the measured side; every other side is a baseline, `form` its
    description in the table. `dynamic`: drop the queue's own functions after creating it."""

    name: str
    conns: list[asyncpg.Connection]
    queue: str
    form: str = ""
    dynamic: bool = False
    floor: bool = False


@dataclass(frozen=True)
class Workload:
    """`client` is one step's statements as (sql, uses the previous step's ids); `server`
    the body of one loop iteration of the `DO` block (`%(q)s` the quoted queue name)."""

    name: str
    per_step: int
    consumes: bool
    server: str


# One loop iteration in the server (`id` bigint and `ids` bigint[] are declared).
READ1 = "SELECT msg_id INTO id FROM pgmq.read(%(q)s, 30, 1);"
READ100 = "SELECT array_agg(msg_id) INTO ids FROM pgmq.read(%(q)s, 30, 100);"
WORKLOADS = (
    Workload("read qty=1 + delete", 1, True, READ1 + " PERFORM pgmq.delete(%(q)s, id);"),
    Workload("read qty=1 + archive", 1, True, READ1 + " PERFORM pgmq.archive(%(q)s, id);"),
    Workload("read qty=100 + delete", 100, True, READ100 + " PERFORM pgmq.delete(%(q)s, ids);"),
    Workload("read qty=100 + archive", 100, True, READ100 + " PERFORM pgmq.archive(%(q)s, ids);"),
    Workload("send 1", 1, False, f"PERFORM pgmq.send(%(q)s, '{MESSAGE}'::jsonb);"),
    Workload(
        "send_batch of 100",
        100,
        False,
        f"PERFORM pgmq.send_batch(%(q)s, array_fill('{MESSAGE}'::jsonb, ARRAY[100]));",
    ),
    Workload("pop qty=1", 1, True, "PERFORM pgmq.pop(%(q)s, 1);"),
    Workload("pop qty=100", 100, True, "PERFORM pgmq.pop(%(q)s, 100);"),
)


FLOOR_TABLE = "sqlpath_floor"


async def floor_step(conn: asyncpg.Connection, workload: Workload, row: int) -> int:
    """The floor of one step: as many autocommit statements as the step's calls, each a
    one-row UPDATE; counted as the step's messages."""
    calls = 2 if workload.name.startswith("read") else 1
    for _ in range(calls):
        await conn.execute(f"UPDATE {FLOOR_TABLE} SET n = n + 1 WHERE id = $1", row)
    return workload.per_step


async def client_step(conn: asyncpg.Connection, workload: Workload, queue: str) -> int:
    """One step as a client runs it: each call a statement of its own (autocommit)."""
    name = workload.name
    if name.startswith("read"):
        qty = workload.per_step
        ack = "delete" if name.endswith("delete") else "archive"
        if qty == 1:
            msg_id = await conn.fetchval("SELECT msg_id FROM pgmq.read($1::text, 30, 1)", queue)
            await conn.fetchval(f"SELECT pgmq.{ack}($1::text, $2::bigint)", queue, msg_id)
            return 1
        rows = await conn.fetch("SELECT * FROM pgmq.read($1::text, 30, $2::integer)", queue, qty)
        ids = [r[0] for r in rows]
        await conn.fetch(f"SELECT * FROM pgmq.{ack}($1::text, $2::bigint[])", queue, ids)
        return len(ids)
    if name == "send 1":
        await conn.fetchval("SELECT * FROM pgmq.send($1::text, $2::jsonb)", queue, MESSAGE)
        return 1
    if name.startswith("send_batch"):
        batch = [MESSAGE] * workload.per_step
        rows = await conn.fetch(
            "SELECT * FROM pgmq.send_batch($1::text, $2::text[]::jsonb[])", queue, batch
        )
        return len(rows)
    rows = await conn.fetch(
        "SELECT * FROM pgmq.pop($1::text, $2::integer)", queue, workload.per_step
    )
    return len(rows)


def server_block(workload: Workload, queue: str, steps: int) -> str:
    """A DO block of `steps` iterations, each committed (the queue name is a constant of this
    module, quoted as a literal)."""
    body = workload.server % {"q": "'" + queue.replace("'", "''") + "'"}
    return (
        "DO $$ DECLARE id bigint; ids bigint[]; BEGIN "
        f"FOR i IN 1..{steps} LOOP {body} COMMIT; END LOOP; END $$"
    )


@dataclass(frozen=True)
class Sizes:
    client_steps: int  # steps per connection per round, client way, one message per step
    server_steps: int  # loop iterations per round, in the server, one message per step
    rounds: int


FULL = Sizes(client_steps=100, server_steps=500, rounds=16)
QUICK = Sizes(client_steps=40, server_steps=200, rounds=3)


class SqlPathBench:
    def __init__(self, sides: list[Side], sizes: Sizes, log: Callable[[str], None]) -> None:
        self.sides = sides
        self.sizes = sizes
        self.log = log
        self.rows: list[Row] = []

    async def _reset(self, side: Side, fill: int) -> None:
        conn = side.conns[0]
        if side.floor:
            await conn.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
            await conn.execute(f"CREATE TABLE {FLOOR_TABLE} (id integer PRIMARY KEY, n bigint)")
            await conn.execute(
                f"INSERT INTO {FLOOR_TABLE} SELECT g, 0 FROM generate_series(0, 7) g"
            )
            return
        await conn.execute(
            "SELECT pgmq.drop_queue(m.queue_name) FROM pgmq.meta m WHERE m.queue_name = $1",
            side.queue,
        )
        await conn.execute("SELECT pgmq.create($1::text)", side.queue)
        if side.dynamic:
            await conn.execute("SELECT pgmq_ext.drop_queue_functions($1::text)", side.queue)
        for start in range(0, fill, 10_000):
            count = min(10_000, fill - start)
            await conn.execute(
                "SELECT pgmq.send_batch($1::text, array_fill($2::jsonb, ARRAY[$3::integer]))",
                side.queue,
                MESSAGE,
                count,
            )
        await conn.execute(f"VACUUM ANALYZE pgmq.q_{side.queue}")
        await conn.execute("CHECKPOINT")

    async def _client_chunk(self, side: Side, workload: Workload, conns: int, steps: int) -> int:
        async def work(conn: asyncpg.Connection, index: int) -> int:
            if side.floor:
                return sum([await floor_step(conn, workload, index) for _ in range(steps)])
            return sum([await client_step(conn, workload, side.queue) for _ in range(steps)])

        count, _ = await run_workers(side.conns[:conns], work)
        return count

    async def _server_chunk(self, side: Side, workload: Workload, steps: int) -> int:
        await side.conns[0].execute(server_block(workload, side.queue, steps))
        return steps * workload.per_step

    async def compare(self, workload: Workload, way: str, conns: int) -> None:
        sizes = self.sizes
        steps = sizes.server_steps if way == "server" else sizes.client_steps
        if workload.per_step > 1:
            steps = max(2, steps // 20)  # batches: fewer steps of a hundred messages each
        need = (sizes.rounds + 1) * steps * conns * workload.per_step + 1000
        for side in self.sides:
            await self._reset(side, need if workload.consumes else 0)
        done = dict.fromkeys((s.name for s in self.sides), 0)
        spent = dict.fromkeys((s.name for s in self.sides), 0.0)
        for turn in range(-1, sizes.rounds):  # round -1 warms up, uncounted
            order = self.sides if turn % 2 == 0 else self.sides[::-1]
            for side in order:
                started = time.perf_counter()
                if way == "server":
                    count = await self._server_chunk(side, workload, steps)
                else:
                    count = await self._client_chunk(side, workload, conns, steps)
                if turn >= 0:
                    spent[side.name] += time.perf_counter() - started
                    done[side.name] += count
        rate = {name: done[name] / spent[name] for name in done}
        label = f"{workload.name} ({'in server, each committed' if way == 'server' else 'client'})"
        rates = ", ".join(f"{name} {value:,.0f}" for name, value in rate.items())
        shares = "".join(
            f", {name}/floor {value / rate['floor']:.2f}"
            for name, value in rate.items()
            if "floor" in rate and name != "floor"
        )
        self.log(f"  {label} x{conns}: {rates} msg/s{shares}")
        note = "synchronous_commit off" if way == "server" else ""
        for side in self.sides:
            if side.name != "ours":
                self.rows.append(
                    Row(
                        SECTION,
                        label,
                        conns,
                        rate["ours"],
                        rate[side.name],
                        baseline_form=side.form,
                        note=note,
                    )
                )


PGMQ_FORM = "PGMQ 1.13's SQL, same calls"
DYNAMIC_FORM = "our dynamic path (before)"
FLOOR_FORM = "floor: same round trips, one-row UPDATEs"


def sides(
    ours: list[asyncpg.Connection], theirs: list[asyncpg.Connection], floor: bool = False
) -> list[Side]:
    """The sides of a comparison; `floor` adds the floor (client way)."""
    found = [
        Side("ours", ours, QUEUE),
        Side("dynamic", ours, QUEUE_DYNAMIC, DYNAMIC_FORM, dynamic=True),
        Side("pgmq", theirs, QUEUE, PGMQ_FORM),
    ]
    if floor:
        found.append(Side("floor", ours, "", FLOOR_FORM, floor=True))
    return found


async def run(
    server_dsn: str, dsn: str, quick: bool = False, log: Callable[[str], None] = lambda _: None
) -> list[Row]:
    """Rows of ours against PGMQ 1.13 and against our dynamic path; none without PGMQ's SQL."""
    sql = pgmq_sql()
    if sql is None:
        log("sqlpath benchmark skipped: the pgmq package (PGMQ's SQL) is not installed")
        return []
    theirs_dsn = await recreate_database(server_dsn, PGMQ_DATABASE)
    quiet = {"synchronous_commit": "off"}
    ours = [await asyncpg.connect(dsn) for _ in range(4)]
    theirs = [await asyncpg.connect(theirs_dsn) for _ in range(4)]
    ours_quiet = await asyncpg.connect(dsn, server_settings=quiet)
    theirs_quiet = await asyncpg.connect(theirs_dsn, server_settings=quiet)
    bench = SqlPathBench([], QUICK if quick else FULL, log)
    try:
        await theirs[0].execute(sql)
        for workload in WORKLOADS:
            bench.sides = sides(ours, theirs, floor=True)
            for conns in (1, 4):
                await bench.compare(workload, "client", conns)
            bench.sides = sides([ours_quiet], [theirs_quiet])
            await bench.compare(workload, "server", 1)
        for name in (QUEUE, QUEUE_DYNAMIC):
            await ours[0].execute("SELECT pgmq.drop_queue($1::text)", name)
        await ours[0].execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
    finally:
        for conn in [*ours, *theirs, ours_quiet, theirs_quiet]:
            await conn.close()
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{PGMQ_DATABASE}" WITH (FORCE)')
        finally:
            await admin.close()
    return bench.rows
