"""Partitioned queues: by msg_id and by time, maintenance in SQL and from Python."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest

from orchestrator.db import connect
from orchestrator.queue.maintenance import maintain
from tests.integration.queue.helpers import ids


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


PARTITIONS = """
    SELECT c.relname,
           pg_get_expr(c.relpartbound, c.oid) AS bound,
           (SELECT count(*) FROM pg_inherits i2 WHERE i2.inhparent = c.oid) AS children
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = $1::regclass
     ORDER BY c.relname
"""


async def _partitions(conn: asyncpg.Connection, table: str) -> list[str]:
    return [r["relname"] for r in await conn.fetch(PARTITIONS, table)]


async def _count(conn: asyncpg.Connection, table: str) -> int:
    # Table names here are literals of the tests, never input.
    return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


async def _actions(conn: asyncpg.Connection, queue: str | None) -> list[tuple[str, str, str]]:
    rows = await conn.fetch("SELECT * FROM pgmq_ext.run_maintenance($1)", queue)
    return [(r["table_name"], r["action"], r["partition_name"]) for r in rows]


async def _send_n(conn: asyncpg.Connection, queue: str, n: int) -> list[int]:
    rows = await conn.fetch(
        "SELECT * FROM pgmq.send_batch($1, $2::jsonb[])", queue, [{"n": i} for i in range(n)]
    )
    return ids(rows, "send_batch")


async def test_msg_id_partitions_are_made_ahead(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create_partitioned('p', '10', '30')")
    expected = ["q_p_default", "q_p_p0", "q_p_p10", "q_p_p20", "q_p_p30", "q_p_p40"]
    assert await _partitions(conn, "pgmq.q_p") == expected
    assert await _partitions(conn, "pgmq.a_p") == [n.replace("q_", "a_", 1) for n in expected]
    bounds = await conn.fetch(PARTITIONS, "pgmq.q_p")
    assert [r["bound"] for r in bounds] == [
        "DEFAULT",
        "FOR VALUES FROM ('0') TO ('10')",
        "FOR VALUES FROM ('10') TO ('20')",
        "FOR VALUES FROM ('20') TO ('30')",
        "FOR VALUES FROM ('30') TO ('40')",
        "FOR VALUES FROM ('40') TO ('50')",
    ]
    schemas = await conn.fetch(
        "SELECT DISTINCT relnamespace::regnamespace::text AS s FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'pgmq.q_p'::regclass"
    )
    assert [r["s"] for r in schemas] == ["pgmq_ext"]
    # Running maintenance again right away has nothing to do.
    assert await _actions(conn, "p") == []


async def test_msg_id_partitions_send_read_archive_and_retention(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute("SELECT pgmq.create_partitioned('p', '10', '30')")
    assert await _send_n(conn, "p", 45) == list(range(1, 46))
    assert await _count(conn, "pgmq_ext.q_p_default") == 0
    assert await _count(conn, "pgmq_ext.q_p_p10") == 10
    # A read spans partitions, oldest first.
    read = await conn.fetch("SELECT * FROM pgmq.read('p', 600, 15)")
    assert ids(read) == list(range(1, 16))
    archived = await conn.fetch(
        "SELECT * FROM pgmq.archive('p', ARRAY[5, 15, 25, 35, 45]::bigint[])"
    )
    assert sorted(ids(archived, "archive")) == [5, 15, 25, 35, 45]
    assert await _count(conn, "pgmq_ext.a_p_p40") == 1
    assert await _count(conn, "pgmq_ext.a_p_p0") == 1
    assert await conn.fetchval("SELECT pgmq.delete('p', 44::bigint)") is True
    assert await conn.fetchval("SELECT pgmq.archive('p', 43::bigint)") is True

    # Maintenance lags: messages past the premade partitions land in the default partition.
    assert await _send_n(conn, "p", 30) == list(range(46, 76))
    assert await _count(conn, "pgmq_ext.q_p_default") == 26
    visible = await conn.fetch("SELECT * FROM pgmq.read('p', 600, 100)")
    assert ids(visible) == [m for m in range(16, 76) if m not in (25, 35, 45, 43, 44)]
    assert await conn.fetchval("SELECT pgmq.archive('p', 70::bigint)") is True
    assert await _count(conn, "pgmq_ext.a_p_default") == 1

    actions = await _actions(conn, "p")
    created = [(t, p) for t, a, p in actions if a == "created"]
    dropped = [(t, p) for t, a, p in actions if a == "dropped"]
    # Bins 5..7 hold rows of the default partition; the newest msg_id (75) is in bin 7, so
    # bins 7..11 are wanted ahead. msg_ids below 75 - 30 = 45 are past retention: bins 0..3.
    assert created == [("pgmq.q_p", f"pgmq_ext.q_p_p{b * 10}") for b in range(5, 12)] + [
        ("pgmq.a_p", f"pgmq_ext.a_p_p{b * 10}") for b in range(5, 12)
    ]
    assert dropped == [("pgmq.q_p", f"pgmq_ext.q_p_p{b * 10}") for b in range(4)] + [
        ("pgmq.a_p", f"pgmq_ext.a_p_p{b * 10}") for b in range(4)
    ]
    moved = await conn.fetch("SELECT * FROM pgmq_ext.run_maintenance('p')")
    assert moved == []  # nothing left to do
    assert await _count(conn, "pgmq_ext.q_p_default") == 0
    assert await _count(conn, "pgmq_ext.a_p_default") == 0
    assert await _count(conn, "pgmq_ext.q_p_p50") == 10
    assert await _count(conn, "pgmq_ext.a_p_p70") == 1
    # Retention dropped messages 1..39 (read or not); 40..75 are all there.
    remaining = ids(await conn.fetch("SELECT msg_id FROM pgmq.q_p ORDER BY 1"))
    assert remaining == [m for m in range(40, 76) if m not in (43, 44, 45, 70)]
    assert ids(await conn.fetch("SELECT msg_id FROM pgmq.a_p ORDER BY 1")) == [43, 45, 70]
    # The queue carries on normally.
    assert await _send_n(conn, "p", 1) == [76]
    assert await conn.fetchval("SELECT pgmq.archive('p', 76::bigint)") is True
    metrics = await conn.fetchrow("SELECT * FROM pgmq.metrics('p')")
    assert (metrics["queue_length"], metrics["total_messages"]) == (len(remaining), 76)


async def test_maintenance_report_from_python(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create_partitioned('a1', '5', '10')")
    await conn.execute("SELECT pgmq.create_partitioned('a2', '100', '1000')")
    await conn.execute("SELECT pgmq.create('plain')")
    report = await maintain(conn)
    assert report.actions == ()
    assert await _send_n(conn, "a1", 40) == list(range(1, 41))
    report = await maintain(conn)
    assert report.problems == ()
    assert {a.queue_name for a in report.actions} == {"a1"}
    # Rows 25..40 waited in the default partition (premade: bins 0..4, msg_ids 0..24).
    assert report.moved_rows == 16
    created = [a.partition_name for a in report.created if a.table_name == "pgmq.q_a1"]
    assert created == [f"pgmq_ext.q_a1_p{b * 5}" for b in range(5, 13)]
    dropped = [a.partition_name for a in report.dropped if a.table_name == "pgmq.q_a1"]
    # Retention 10 behind msg_id 40: bins ending at or before 30 go.
    assert dropped == [f"pgmq_ext.q_a1_p{b * 5}" for b in range(6)]
    assert all(a.detail == "past retention" for a in report.dropped)
    assert (await maintain(conn, "a1")).actions == ()
    assert (await maintain(conn, "plain")).actions == ()
    with pytest.raises(asyncpg.UndefinedTableError, match='queue "nope" does not exist'):
        await maintain(conn, "nope")
    maintained = await conn.fetch(
        "SELECT queue_name, maintained_at IS NOT NULL AS done FROM pgmq_ext.partition_config "
        "ORDER BY 1"
    )
    assert [tuple(r) for r in maintained] == [("a1", True), ("a2", True)]


async def test_time_partitions(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create_partitioned('t', '1 hour', '1 day')")
    now = await conn.fetchval("SELECT now()")
    hour = now.replace(minute=0, second=0, microsecond=0).astimezone(dt.UTC)
    names = [f"q_t_p{(hour + dt.timedelta(hours=h)):%Y%m%d%H%M}" for h in range(5)]
    # The hour may have turned between create_partitioned and now(): allow either.
    assert set(await _partitions(conn, "pgmq.q_t")) - {"q_t_default"} <= set(
        [*names, f"q_t_p{hour - dt.timedelta(hours=1):%Y%m%d%H%M}"]
    )
    assert await _send_n(conn, "t", 3) == [1, 2, 3]
    assert await _count(conn, "pgmq_ext.q_t_default") == 0
    # Rows from the past (as if maintenance had been down): 3 hours old and 2 days old.
    old_rows = await conn.fetch(
        "INSERT INTO pgmq.q_t (enqueued_at, vt, message) VALUES "
        "(now() - interval '3 hours', now(), '{\"age\": \"3h\"}'), "
        "(now() - interval '2 days', now(), '{\"age\": \"2d\"}') RETURNING enqueued_at"
    )
    await conn.execute(
        "INSERT INTO pgmq.a_t (msg_id, enqueued_at, vt, message, archived_at) VALUES "
        "(100, now(), now(), '{}', $1)",
        old_rows[1]["enqueued_at"],
    )
    assert await _count(conn, "pgmq_ext.q_t_default") == 2
    assert await _count(conn, "pgmq_ext.a_t_default") == 1
    # Reads and archives work across the default and the hourly partitions.
    read = await conn.fetch("SELECT * FROM pgmq.read('t', 0, 10)")
    assert ids(read) == [1, 2, 3, 4, 5]
    archived = await conn.fetch("SELECT * FROM pgmq.archive('t', ARRAY[1, 2]::bigint[])")
    assert sorted(ids(archived, "archive")) == [1, 2]

    actions = await _actions(conn, "t")
    three_hours = old_rows[0]["enqueued_at"].astimezone(dt.UTC)
    two_days = old_rows[1]["enqueued_at"].astimezone(dt.UTC)
    name_3h = f"pgmq_ext.q_t_p{three_hours:%Y%m%d%H}00"
    name_2d = f"pgmq_ext.q_t_p{two_days:%Y%m%d%H}00"
    archive_2d = f"pgmq_ext.a_t_p{two_days:%Y%m%d%H}00"
    assert ("pgmq.q_t", "created", name_3h) in actions
    assert ("pgmq.q_t", "created", name_2d) in actions
    assert ("pgmq.q_t", "dropped", name_2d) in actions
    assert ("pgmq.a_t", "created", archive_2d) in actions
    assert ("pgmq.a_t", "dropped", archive_2d) in actions
    assert ("pgmq.q_t", "dropped", name_3h) not in actions
    assert await _count(conn, "pgmq_ext.q_t_default") == 0
    assert await _count(conn, "pgmq_ext.a_t_default") == 0
    # The 2-day-old message went with its partition; the 3-hour-old one stays.
    messages = await conn.fetch("SELECT msg_id, message FROM pgmq.q_t ORDER BY 1")
    assert [(r["msg_id"], r["message"]) for r in messages] == [(3, {"n": 2}), (4, {"age": "3h"})]
    assert ids(await conn.fetch("SELECT msg_id FROM pgmq.a_t ORDER BY 1")) == [1, 2]
    # Nothing left to move or drop (a partition ahead may be new if the hour just turned).
    assert {a for _t, a, _p in await _actions(conn, "t")} <= {"created"}


async def test_month_partitions(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create_partitioned('m', '1 month', '3 months')")
    bounds = await conn.fetch(PARTITIONS, "pgmq.q_m")
    await conn.execute("SET TimeZone = 'UTC'")
    bounds = await conn.fetch(PARTITIONS, "pgmq.q_m")
    starts = [r["bound"] for r in bounds if r["bound"] != "DEFAULT"]
    assert len(starts) == 5
    assert all("-01 00:00:00+00') TO (" in b for b in starts)
    assert all(len(r["relname"]) == len("q_m_p202601") for r in bounds if r["bound"] != "DEFAULT")
    assert await _send_n(conn, "m", 2) == [1, 2]
    assert await _count(conn, "pgmq_ext.q_m_default") == 0


@pytest.mark.parametrize(
    ("datestyle", "timezone"),
    [
        ("SQL, DMY", "Asia/Kolkata"),
        ("Postgres, MDY", "America/St_Johns"),
        ("German", "Europe/Dublin"),
    ],
)
async def test_maintenance_whatever_the_session_settings(
    conn: asyncpg.Connection, datestyle: str, timezone: str
) -> None:
    await conn.execute("SELECT set_config('DateStyle', $1, false)", datestyle)
    await conn.execute("SELECT set_config('TimeZone', $1, false)", timezone)
    await conn.execute("SELECT set_config('IntervalStyle', 'sql_standard', false)")
    await conn.execute("SELECT pgmq.create_partitioned('t', '1 day', '30 days')")
    assert len(await _partitions(conn, "pgmq.q_t")) == 6
    # Recognises its partitions: nothing to do, no duplicates, no errors.
    assert await _actions(conn, "t") == []
    await conn.execute(
        "INSERT INTO pgmq.q_t (enqueued_at, vt, message) VALUES "
        "(now() - interval '2 days', now(), '{}')"
    )
    actions = await _actions(conn, "t")
    assert [a for _t, a, _p in actions] == ["created"]
    assert await _actions(conn, "t") == []


async def test_long_queue_names_get_short_partition_names(conn: asyncpg.Connection) -> None:
    name = "x" * 47
    await conn.execute(
        "SELECT pgmq.create_partitioned($1, '1000000000000000', '9000000000000000000')", name
    )
    parts = await _partitions(conn, f"pgmq.q_{name}")
    assert len(parts) == 6 and len(set(parts)) == 6
    assert all(len(p) <= 63 for p in parts)
    assert f"q_{name}_default" in parts
    assert await _send_n(conn, name, 3) == [1, 2, 3]
    assert ids(await conn.fetch("SELECT * FROM pgmq.read($1, 30, 5)", name)) == [1, 2, 3]
    assert await conn.fetchval("SELECT pgmq.archive($1, 1::bigint)", name) is True
    assert await _actions(conn, name) == []
    assert await conn.fetchval("SELECT pgmq.drop_queue($1)", name) is True
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'q_xxx%' OR relname LIKE 'a_xxx%'"
        )
        == 0
    )


async def test_busy_queue_is_skipped_and_others_are_maintained(
    conn: asyncpg.Connection, other_conn: asyncpg.Connection
) -> None:
    await conn.execute("SELECT pgmq.create_partitioned('busy', '10', '1000')")
    await conn.execute("SELECT pgmq.create_partitioned('calm', '10', '1000')")
    await _send_n(conn, "busy", 60)
    await _send_n(conn, "calm", 60)
    async with other_conn.transaction():
        await other_conn.execute("LOCK TABLE pgmq_ext.q_busy_default IN ACCESS SHARE MODE")
        await conn.execute("SET lock_timeout = '200ms'")
        rows = await conn.fetch("SELECT * FROM pgmq_ext.run_maintenance()")
    skipped = [r for r in rows if r["action"] == "skipped"]
    assert [(r["queue_name"], r["detail"]) for r in skipped] == [
        ("busy", "the queue is busy (lock timeout); run maintenance again later")
    ]
    assert {r["queue_name"] for r in rows if r["action"] == "created"} == {"calm"}
    assert await _count(conn, "pgmq_ext.q_busy_default") == 11  # untouched, retried later
    report = await maintain(conn, "busy")
    assert report.problems == () and report.moved_rows == 11


async def test_maintenance_of_an_unknown_queue(conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.UndefinedTableError, match='queue "ghost" does not exist'):
        await conn.fetch("SELECT * FROM pgmq_ext.run_maintenance('ghost')")


async def test_maintenance_while_messages_flow(conn: asyncpg.Connection, dsn: str) -> None:
    """Sends and reads go on while maintenance creates, fills and attaches partitions."""
    await conn.execute("SELECT pgmq.create_partitioned('flow', '50', '100000')")
    workers = [await connect(dsn) for _ in range(3)]
    total = 3000
    stop = asyncio.Event()
    read: list[int] = []

    async def produce(c: asyncpg.Connection) -> None:
        for _ in range(total // 20 // 2):
            await c.execute("SELECT pgmq.send_batch('flow', $1::jsonb[])", [{"x": 1}] * 20)

    async def consume(c: asyncpg.Connection) -> None:
        while not stop.is_set() or len(read) < total:
            rows = await c.fetch("SELECT * FROM pgmq.read('flow', 600, 25)")
            read.extend(r["msg_id"] for r in rows)
            if not rows:
                await asyncio.sleep(0.01)

    async def maintenance() -> int:
        runs = 0
        while not stop.is_set():
            report = await maintain(conn, "flow")
            assert [a for a in report.actions if a.action == "failed"] == []
            runs += 1
            await asyncio.sleep(0.02)
        return runs

    producers = asyncio.gather(produce(workers[0]), produce(workers[1]))
    consumer = asyncio.ensure_future(consume(workers[2]))
    runs = asyncio.ensure_future(maintenance())
    try:
        await asyncio.wait_for(producers, timeout=120)
        stop.set()
        await asyncio.wait_for(consumer, timeout=120)
        assert await runs > 0
    finally:
        stop.set()
        for task in (producers, consumer, runs):
            task.cancel()
        await asyncio.gather(producers, consumer, runs, return_exceptions=True)
        for c in workers:
            await c.close()
    assert sorted(read) == list(range(1, total + 1))  # every message read once, none lost
    await maintain(conn, "flow")
    assert await _count(conn, "pgmq_ext.q_flow_default") == 0
    assert await _count(conn, "pgmq.q_flow") == total


async def test_maintenance_that_drops_does_not_deadlock_readers(
    conn: asyncpg.Connection, dsn: str
) -> None:
    """A reader that arrives while maintenance moves rows must not become a deadlock victim.

    Maintenance here both creates partitions (rows wait in the default partition) and drops
    partitions past retention. A holder of a SHARE UPDATE EXCLUSIVE lock on the queue table
    pauses maintenance part-way; a reader arrives meanwhile; then the holder lets go.
    """
    await conn.execute("SELECT pgmq.create_partitioned('d', '10', '20')")
    await _send_n(conn, "d", 60)  # 50..60 in the default partition; bins 0..3 expire
    holder, reader, runner = [await connect(dsn) for _ in range(3)]
    try:
        await holder.execute("BEGIN")
        await holder.execute("LOCK TABLE ONLY pgmq.q_d IN SHARE UPDATE EXCLUSIVE MODE")
        await runner.execute("SET lock_timeout = '20s'")
        maintenance = asyncio.ensure_future(
            runner.fetch("SELECT * FROM pgmq_ext.run_maintenance('d')")
        )
        await asyncio.sleep(0.3)
        reading = asyncio.ensure_future(reader.fetch("SELECT * FROM pgmq.read('d', 600, 5)"))
        await asyncio.sleep(0.3)
        await holder.execute("COMMIT")
        rows = await asyncio.wait_for(reading, timeout=60)
        actions = await asyncio.wait_for(maintenance, timeout=60)
    finally:
        for c in (holder, reader, runner):
            await c.close()
    assert [a["action"] for a in actions if a["action"] in ("failed", "skipped")] == []
    assert {a["action"] for a in actions} == {"created", "dropped"}
    # The reader got messages: the oldest that survived retention, or the oldest overall
    # if it read before the drop.
    assert len(rows) == 5


async def _partitions_scanned(conn: asyncpg.Connection, table: str, statement: str) -> int:
    """How many partitions of `table` `statement` scanned (in the transaction `conn` is in)."""
    before = {r["relid"]: r["n"] for r in await conn.fetch(_PER_PARTITION, table)}
    await conn.fetch(statement)
    after = await conn.fetch(_PER_PARTITION, table)
    return sum(1 for r in after if r["n"] > before.get(r["relid"], 0))


_PER_PARTITION = """
    SELECT i.inhrelid AS relid, coalesce(s.idx_scan, 0) + coalesce(s.seq_scan, 0) AS n
      FROM pg_inherits i
      LEFT JOIN pg_stat_xact_user_tables s ON s.relid = i.inhrelid
     WHERE i.inhparent = $1::regclass
"""


async def test_a_deep_queue_partitioned_by_msg_id_is_read_at_its_head(
    conn: asyncpg.Connection,
) -> None:
    """A backlog over 25 partitions: reads, pops and acks scan the partitions of the queue's
    head (and of the ids they are given), not every partition, once the session has found
    the head (the first read of a session looks at every partition once)."""
    await conn.execute("SELECT pgmq.create_partitioned('wide', '1000', '100000000')")
    for _ in range(25):
        await conn.execute("SELECT pgmq_ext.run_maintenance('wide')")
        await conn.execute(
            "SELECT pgmq.send_batch('wide', ARRAY(SELECT jsonb_build_object('i', i)"
            " FROM generate_series(1, 1000) i))"
        )
    await conn.execute("SELECT pgmq_ext.run_maintenance('wide')")
    assert len(await _partitions(conn, "pgmq.q_wide")) > 25
    for _ in range(8):  # past the plan cache's custom plans
        await conn.execute("SELECT pgmq.read('wide', 0, 1)")
        await conn.execute("SELECT pgmq.read('wide', 0, 10)")
    statements = [
        "SELECT * FROM pgmq.read('wide', 60, 1)",
        "SELECT * FROM pgmq.read('wide', 60, 10)",
        "SELECT * FROM pgmq.pop('wide')",
        "SELECT * FROM pgmq.pop('wide', 10)",
        "SELECT * FROM pgmq.delete('wide', ARRAY[1, 2, 3]::bigint[])",
        "SELECT * FROM pgmq.archive('wide', ARRAY[4, 5, 1500]::bigint[])",
        "SELECT * FROM pgmq.set_vt('wide', ARRAY[6, 7]::bigint[], 0)",
        "SELECT * FROM pgmq.delete('wide', 8::bigint)",
        "SELECT * FROM pgmq.archive('wide', 9::bigint)",
    ]
    async with conn.transaction():
        for statement in statements:
            assert await _partitions_scanned(conn, "pgmq.q_wide", statement) <= 3, statement
    got = await conn.fetch("SELECT msg_id FROM pgmq.read('wide', 60, 3)")
    assert [r["msg_id"] for r in got] == [6, 7, 23]


async def test_a_message_committed_late_below_the_head_is_read(
    conn: asyncpg.Connection, dsn: str
) -> None:
    """A session remembers where it found the lowest msg_id of a queue partitioned by msg_id;
    a message whose send committed after the head moved on, with a lower msg_id, is still the
    next one read."""
    await conn.execute("SELECT pgmq.create_partitioned('late', '10', '100000000')")
    sender = await connect(dsn)
    try:
        tx = sender.transaction()
        await tx.start()
        late = await sender.fetchval("SELECT pgmq.send('late', '{\"late\": true}')")
        for _ in range(5):
            await conn.execute("SELECT pgmq_ext.run_maintenance('late')")
            await _send_n(conn, "late", 10)
        for _ in range(30):
            got = await conn.fetch("SELECT msg_id FROM pgmq.read('late', 60, 1)")
            await conn.execute("SELECT pgmq.delete('late', $1::bigint)", got[0]["msg_id"])
        assert got[0]["msg_id"] > 30
        await tx.commit()
        got = await conn.fetch("SELECT msg_id FROM pgmq.read('late', 60, 1)")
        assert [r["msg_id"] for r in got] == [late]
    finally:
        await sender.close()
