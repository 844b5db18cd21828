"""FIFO groups under many concurrent readers: never two messages of one group in flight, each
group delivered in msg_id order, an abandoned message (vt ran out) back at the head of its
group."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import pytest

from orchestrator.db import connect


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


READERS = 8
GROUPS = 40
MESSAGES = 1_500
ABANDONED_BATCHES = 5  # read by the first reader with vt 1 and never acknowledged


@pytest.fixture
async def readers(dsn: str) -> AsyncIterator[list[asyncpg.Connection]]:
    conns = [await connect(dsn) for _ in range(READERS)]
    try:
        yield conns
    finally:
        for c in conns:
            await c.close()


class Run:
    """What the readers saw. Times are this process's monotonic clock: a read "ended" when
    its rows arrived, an archive "started" when it was sent."""

    def __init__(self) -> None:
        self.batches = itertools.count(1)
        self.batch_of: dict[tuple[int, int], int] = {}  # (msg_id, read_ct) -> batch
        self.read_end: dict[int, float] = {}  # batch -> when its rows arrived
        self.archive_start: dict[int, float] = {}  # msg_id -> when its archive was sent
        self.holder: dict[str, int] = {}  # group -> batch holding it, until its archive starts
        self.archiving: set[int] = set()  # batches whose archive was sent
        self.abandoned_until: dict[str, datetime] = {}  # group -> vt of its abandoned messages
        self.archived = 0
        self.abandoned = 0

    def take(self, rows: list[asyncpg.Record]) -> int:
        batch = next(self.batches)
        self.read_end[batch] = time.monotonic()
        for row in rows:
            group = row["headers"]["x-pgmq-group"]
            holder = self.holder.get(group)
            assert holder in (None, batch) or holder in self.archiving, (
                f"group {group} delivered while batch {holder} held it"
            )
            until = self.abandoned_until.get(group)
            assert until is None or row["last_read_at"] >= until, f"group {group} taken in flight"
            self.holder[group] = batch
            self.batch_of[(row["msg_id"], row["read_ct"])] = batch
        return batch

    def archiving_now(self, batch: int, rows: list[asyncpg.Record]) -> None:
        self.archiving.add(batch)
        now = time.monotonic()
        for row in rows:
            self.archive_start[row["msg_id"]] = now

    def release(self, batch: int, rows: list[asyncpg.Record]) -> None:
        for row in rows:
            group = row["headers"]["x-pgmq-group"]
            if self.holder.get(group) == batch:
                del self.holder[group]

    def abandon(self, batch: int, rows: list[asyncpg.Record]) -> None:
        """A crashed reader: its messages stay in flight until their vt runs out."""
        self.abandoned += 1
        self.release(batch, rows)
        for row in rows:
            group = row["headers"]["x-pgmq-group"]
            self.abandoned_until[group] = max(row["vt"], self.abandoned_until.get(group, row["vt"]))


async def _consume(conn: asyncpg.Connection, function: str, run: Run, first: bool) -> None:
    rng = random.Random(id(conn))
    while run.archived < MESSAGES:
        abandon = first and run.abandoned < ABANDONED_BATCHES
        rows = await conn.fetch(
            f"SELECT * FROM pgmq.{function}($1, $2, $3)", "fifo", 1 if abandon else 600, 4
        )
        if not rows:
            await asyncio.sleep(0.005)
            continue
        batch = run.take(rows)
        if abandon:
            run.abandon(batch, rows)
            continue
        await asyncio.sleep(rng.random() / 500)
        ids = [r["msg_id"] for r in rows]
        run.archiving_now(batch, rows)
        archived = await conn.fetch("SELECT * FROM pgmq.archive('fifo', $1::bigint[])", ids)
        assert len(archived) == len(ids)
        run.release(batch, rows)
        run.archived += len(ids)


async def _check_order(conn: asyncpg.Connection, run: Run) -> None:
    """In every group, a message's last delivery did not end before the archive of the
    message before it was sent, unless both were delivered in one batch."""
    rows = await conn.fetch(
        "SELECT msg_id, read_ct, headers->>'x-pgmq-group' AS g FROM pgmq.a_fifo ORDER BY msg_id"
    )
    assert len(rows) == MESSAGES
    by_group: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        by_group[row["g"]].append(row)
    assert len(by_group) == GROUPS
    for group, messages in by_group.items():
        for earlier, later in itertools.pairwise(messages):
            earlier_batch = run.batch_of[(earlier["msg_id"], earlier["read_ct"])]
            later_batch = run.batch_of[(later["msg_id"], later["read_ct"])]
            in_order = run.read_end[later_batch] >= run.archive_start[earlier["msg_id"]]
            assert earlier_batch == later_batch or in_order, (
                group,
                earlier["msg_id"],
                later["msg_id"],
            )


@pytest.mark.parametrize("function", ["read_grouped", "read_grouped_rr", "read_grouped_head"])
async def test_concurrent_grouped_readers_keep_each_group_in_order(
    conn: asyncpg.Connection, readers: list[asyncpg.Connection], function: str
) -> None:
    await conn.execute("SELECT pgmq.create('fifo'), pgmq.create_fifo_index('fifo')")
    rng = random.Random(7)
    groups = [f"g{rng.randrange(GROUPS)}" for _ in range(MESSAGES - GROUPS)]
    groups += [f"g{i}" for i in range(GROUPS)]
    await conn.execute(
        "SELECT pgmq.send_batch('fifo', $1::jsonb[], $2::jsonb[])",
        [{"i": i} for i in range(MESSAGES)],
        [{"x-pgmq-group": g} for g in groups],
    )
    run = Run()
    tasks = [_consume(c, function, run, first=i == 0) for i, c in enumerate(readers)]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=240)
    assert run.abandoned == ABANDONED_BATCHES
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_fifo") == 0
    await _check_order(conn, run)
    # The abandoned messages came back (read twice or more) and were delivered again first.
    assert await conn.fetchval("SELECT count(*) FROM pgmq.a_fifo WHERE read_ct > 1") >= 1
