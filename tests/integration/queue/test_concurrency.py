"""Many consumers at once: exactly-once delivery while vt holds, redelivery after it expires."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orchestrator.db import connect


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


CONSUMERS = 8
MESSAGES = 20_000


@pytest.fixture
async def consumers(dsn: str) -> AsyncIterator[list[asyncpg.Connection]]:
    conns = [await connect(dsn) for _ in range(CONSUMERS)]
    try:
        yield conns
    finally:
        for c in conns:
            await c.close()


async def _fill(conn: asyncpg.Connection, queue: str, n: int) -> None:
    for start in range(0, n, 5000):
        await conn.execute(
            "SELECT pgmq.send_batch($1, $2::jsonb[])",
            queue,
            [{"i": i} for i in range(start, min(n, start + 5000))],
        )


async def _drain(
    conn: asyncpg.Connection, queue: str, qty: int, delete: bool
) -> list[asyncpg.Record]:
    """Read until the queue has nothing visible; optionally delete what was read (in batches
    of 50 messages, so acknowledged messages do not pile up in front of the readers)."""
    got: list[asyncpg.Record] = []
    unacked: list[int] = []

    async def ack() -> None:
        deleted = await conn.fetch("SELECT * FROM pgmq.delete($1, $2::bigint[])", queue, unacked)
        assert len(deleted) == len(unacked)
        unacked.clear()

    while True:
        rows = await conn.fetch("SELECT * FROM pgmq.read($1, 600, $2)", queue, qty)
        if not rows:
            if delete and unacked:
                await ack()
            return got
        assert len(rows) <= qty
        got.extend(rows)
        if delete:
            unacked.extend(r["msg_id"] for r in rows)
            if len(unacked) >= 50:
                await ack()


@pytest.mark.parametrize(("qty", "delete"), [(1, True), (50, False)])
async def test_every_message_delivered_exactly_once(
    conn: asyncpg.Connection,
    queue: str,
    consumers: list[asyncpg.Connection],
    qty: int,
    delete: bool,
) -> None:
    await _fill(conn, queue, MESSAGES)
    results = await asyncio.gather(*(_drain(c, queue, qty, delete) for c in consumers))
    delivered = [r for rows in results for r in rows]
    counts = Counter(r["msg_id"] for r in delivered)
    duplicates = {msg_id: n for msg_id, n in counts.items() if n > 1}
    assert duplicates == {}
    assert sorted(counts) == list(range(1, MESSAGES + 1))
    # Nobody else had read any of them: the first read was the only one.
    assert {r["read_ct"] for r in delivered} == {1}
    assert all(r["message"] == {"i": r["msg_id"] - 1} for r in delivered)
    # Work was shared (each consumer got some) and came out oldest first per consumer.
    assert all(rows for rows in results)
    for rows in results:
        got = [r["msg_id"] for r in rows]
        assert got == sorted(got)
    left = await conn.fetchrow(
        "SELECT count(*) AS n, count(*) FILTER (WHERE vt <= now()) AS visible, "
        "coalesce(max(read_ct), 1) AS max_read_ct FROM pgmq.q_q"
    )
    assert left["visible"] == 0
    assert left["max_read_ct"] == 1
    assert left["n"] == (0 if delete else MESSAGES)


async def test_expired_vt_redelivers_with_read_ct_incremented(
    conn: asyncpg.Connection, queue: str, consumers: list[asyncpg.Connection]
) -> None:
    """Consumers 'crash' on every 10th message (no ack); those come back after their vt."""
    total = 2000
    await _fill(conn, queue, total)
    deliveries: list[asyncpg.Record] = []
    done: set[int] = set()

    async def consume(c: asyncpg.Connection) -> None:
        while len(done) < total:
            rows = await c.fetch("SELECT * FROM pgmq.read($1, 1, 20)", queue)
            if not rows:
                await c.execute("SELECT pg_sleep(0.05)")
                continue
            deliveries.extend(rows)
            acked = [r["msg_id"] for r in rows if r["msg_id"] % 10 != 0 or r["read_ct"] > 1]
            await c.fetch("SELECT * FROM pgmq.delete($1, $2::bigint[])", queue, acked)
            done.update(acked)

    await asyncio.wait_for(asyncio.gather(*(consume(c) for c in consumers)), timeout=120)
    by_id: dict[int, list[asyncpg.Record]] = {}
    for r in deliveries:
        by_id.setdefault(r["msg_id"], []).append(r)
    assert sorted(by_id) == list(range(1, total + 1))
    for msg_id, rows in by_id.items():
        rows.sort(key=lambda r: r["read_ct"])
        # read_ct counts the deliveries: 1, 2, 3, ... without gaps or repeats.
        assert [r["read_ct"] for r in rows] == list(range(1, len(rows) + 1))
        # A message is delivered again only after the previous delivery's vt expired.
        for previous, following in itertools.pairwise(rows):
            assert following["last_read_at"] >= previous["vt"]
        if msg_id % 10 == 0:
            assert len(rows) >= 2
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_q") == 0


@pytest.mark.parametrize(("qty", "total"), [(1, 2000), (10, 5000)])
async def test_concurrent_pops_never_return_a_message_twice(
    conn: asyncpg.Connection,
    queue: str,
    consumers: list[asyncpg.Connection],
    qty: int,
    total: int,
) -> None:
    await _fill(conn, queue, total)

    async def pop_all(c: asyncpg.Connection) -> list[int]:
        got: list[int] = []
        while rows := await c.fetch("SELECT * FROM pgmq.pop($1, $2)", queue, qty):
            assert len(rows) <= qty
            got.extend(r["msg_id"] for r in rows)
        return got

    results = await asyncio.gather(*(pop_all(c) for c in consumers))
    popped = [m for got in results for m in got]
    assert len(popped) == len(set(popped))
    assert sorted(popped) == list(range(1, total + 1))
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_q") == 0


async def test_readers_and_writers_at_once(
    conn: asyncpg.Connection, queue: str, consumers: list[asyncpg.Connection]
) -> None:
    """Producers keep sending while consumers read, archive and delete; nothing is lost."""
    producers, consumer_conns = consumers[:3], consumers[3:]
    per_producer = 1000
    total = per_producer * len(producers)
    finished = asyncio.Event()
    seen: list[int] = []

    async def produce(c: asyncpg.Connection, k: int) -> None:
        for i in range(0, per_producer, 10):
            await c.execute(
                "SELECT pgmq.send_batch($1, $2::jsonb[])",
                queue,
                [{"p": k, "i": i + j} for j in range(10)],
            )

    async def consume(c: asyncpg.Connection, k: int) -> None:
        while True:
            rows = await c.fetch("SELECT * FROM pgmq.read($1, 600, 7)", queue)
            if not rows:
                if finished.is_set() and len(seen) >= total:
                    return
                await asyncio.sleep(0.01)
                continue
            msg_ids = [r["msg_id"] for r in rows]
            seen.extend(msg_ids)
            ack = "archive" if k % 2 else "delete"
            acked = await c.fetch(f"SELECT * FROM pgmq.{ack}($1, $2::bigint[])", queue, msg_ids)
            assert sorted(r[0] for r in acked) == sorted(msg_ids)

    async def run_producers() -> None:
        await asyncio.gather(*(produce(c, k) for k, c in enumerate(producers)))
        finished.set()

    await asyncio.wait_for(
        asyncio.gather(run_producers(), *(consume(c, k) for k, c in enumerate(consumer_conns))),
        timeout=120,
    )
    assert len(seen) == len(set(seen)) == total
    archived = await conn.fetchval("SELECT count(*) FROM pgmq.a_q")
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_q") == 0
    assert 0 < archived < total
    assert (await conn.fetchrow("SELECT * FROM pgmq.metrics($1)", queue))["total_messages"] == total
