"""metrics() and metrics_all()."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


COLUMNS = [
    "queue_name",
    "queue_length",
    "newest_msg_age_sec",
    "oldest_msg_age_sec",
    "total_messages",
    "scrape_time",
    "queue_visible_length",
    "default_partition_length",
]


async def test_metrics_of_an_empty_queue(conn: asyncpg.Connection, queue: str) -> None:
    before = await conn.fetchval("SELECT now()")
    row = await conn.fetchrow("SELECT * FROM pgmq.metrics(queue_name => $1::text)", queue)
    assert list(row.keys()) == COLUMNS
    after = await conn.fetchval("SELECT now()")
    assert before <= row["scrape_time"] <= after
    assert {**row, "scrape_time": None} == {
        "queue_name": "q",
        "queue_length": 0,
        "newest_msg_age_sec": None,
        "oldest_msg_age_sec": None,
        "total_messages": 0,
        "scrape_time": None,
        "queue_visible_length": 0,
        "default_partition_length": None,
    }


async def test_metrics_of_a_busy_queue(conn: asyncpg.Connection, queue: str) -> None:
    await conn.execute("SELECT pgmq.send_batch($1, ARRAY['{}', '{}', '{}']::jsonb[])", queue)
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb, 3600)", queue)  # delayed
    await conn.execute("SELECT pgmq.read($1, 3600, 1)", queue)  # in flight
    await conn.execute(
        "UPDATE pgmq.q_q SET enqueued_at = now() - interval '120 seconds' WHERE msg_id = 1"
    )
    await conn.execute(
        "UPDATE pgmq.q_q SET enqueued_at = now() - interval '30 seconds' WHERE msg_id = 4"
    )
    async with conn.transaction():  # one now() for metrics and for the expected ages
        # An upper-case name reports the stored (lower-case) name.
        row = await conn.fetchrow("SELECT * FROM pgmq.metrics('Q')")
        ages = await conn.fetchrow(
            "SELECT extract(epoch FROM now() - min(enqueued_at))::int AS oldest, "
            "extract(epoch FROM now() - max(enqueued_at))::int AS newest FROM pgmq.q_q"
        )
    assert row["queue_name"] == "q"
    assert row["queue_length"] == 4
    assert row["queue_visible_length"] == 2
    assert row["total_messages"] == 4
    assert row["oldest_msg_age_sec"] == ages["oldest"] >= 120
    assert row["newest_msg_age_sec"] == ages["newest"] < ages["oldest"]


async def test_total_messages_counts_every_message_ever_sent(
    conn: asyncpg.Connection, queue: str
) -> None:
    await conn.execute(
        "SELECT pgmq.send_batch($1, $2::jsonb[])", queue, [{"i": i} for i in range(10)]
    )
    await conn.execute("SELECT pgmq.delete($1, ARRAY[1, 2, 3]::bigint[])", queue)
    await conn.execute("SELECT pgmq.archive($1, ARRAY[4, 5]::bigint[])", queue)
    await conn.execute("SELECT pgmq.pop($1, 2)", queue)
    row = await conn.fetchrow("SELECT * FROM pgmq.metrics($1)", queue)
    assert (row["queue_length"], row["total_messages"]) == (3, 10)
    await conn.execute("SELECT pgmq.purge_queue($1)", queue)
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    row = await conn.fetchrow("SELECT * FROM pgmq.metrics($1)", queue)
    assert (row["queue_length"], row["total_messages"]) == (1, 11)


async def test_total_messages_of_a_partitioned_queue(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create_partitioned('p', '10', '1000')")
    await conn.execute("SELECT pgmq.send_batch('p', $1::jsonb[])", [{"i": i} for i in range(25)])
    await conn.execute("SELECT pgmq.archive('p', ARRAY[1, 11, 21]::bigint[])")
    row = await conn.fetchrow("SELECT * FROM pgmq.metrics('p')")
    assert (row["queue_length"], row["queue_visible_length"], row["total_messages"]) == (
        22,
        22,
        25,
    )


async def test_metrics_all(conn: asyncpg.Connection) -> None:
    assert await conn.fetch("SELECT * FROM pgmq.metrics_all()") == []
    await conn.execute("SELECT pgmq.create('b')")
    await conn.execute("SELECT pgmq.create_unlogged('a')")
    await conn.execute("SELECT pgmq.create_partitioned('c', '1 hour', '1 day')")
    await conn.execute("SELECT pgmq.send_batch('b', ARRAY['{}', '{}']::jsonb[])")
    await conn.execute("SELECT pgmq.send('c', '{}'::jsonb, 600)")
    rows = await conn.fetch("SELECT * FROM pgmq.metrics_all()")
    assert list(rows[0].keys()) == COLUMNS
    got = {
        r["queue_name"]: (r["queue_length"], r["queue_visible_length"], r["total_messages"])
        for r in rows
    }
    assert got == {"a": (0, 0, 0), "b": (2, 2, 2), "c": (1, 0, 1)}
    assert len({r["scrape_time"] for r in rows}) == 1


async def test_scrape_time_is_the_transaction_time(conn: asyncpg.Connection, queue: str) -> None:
    async with conn.transaction():
        now = await conn.fetchval("SELECT now()")
        row = await conn.fetchrow("SELECT * FROM pgmq.metrics($1)", queue)
    assert row["scrape_time"] == now
    assert isinstance(row["scrape_time"], dt.datetime)


async def test_total_messages_counts_sends_that_rolled_back(
    conn: asyncpg.Connection, queue: str
) -> None:
    """Documented: total_messages is the msg_id sequence, which a rollback does not undo."""
    tx = conn.transaction()
    await tx.start()
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    await tx.rollback()
    row = await conn.fetchrow("SELECT * FROM pgmq.metrics($1)", queue)
    assert (row["queue_length"], row["total_messages"]) == (0, 1)


async def test_default_partition_length_counts_rows_maintenance_has_not_placed(
    conn: asyncpg.Connection, queue: str
) -> None:
    """PGMQ 1.13's last column: the planner's estimate of the rows in a partitioned queue's
    default partitions (queue and archive), NULL for a queue that is not partitioned."""
    await conn.execute("SELECT pgmq.create_partitioned('p', '10', '1000')")
    made = await conn.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'pgmq.q_p'::regclass"
    )
    # Past the partitions made ahead: the last messages land in the default partition.
    count = (made + 2) * 10
    await conn.execute("SELECT pgmq.send_batch('p', $1::jsonb[])", [{"i": i} for i in range(count)])
    await conn.execute("SELECT pgmq.archive('p', $1::bigint)", count)
    await conn.execute("ANALYZE pgmq_ext.q_p_default, pgmq_ext.a_p_default")
    spilled = await conn.fetchval(
        "SELECT (SELECT count(*) FROM pgmq_ext.q_p_default)"
        " + (SELECT count(*) FROM pgmq_ext.a_p_default)"
    )
    assert spilled > 0
    row = await conn.fetchrow("SELECT * FROM pgmq.metrics('p')")
    assert row["default_partition_length"] == spilled
    plain = await conn.fetchrow("SELECT * FROM pgmq.metrics($1)", queue)
    assert plain["default_partition_length"] is None
