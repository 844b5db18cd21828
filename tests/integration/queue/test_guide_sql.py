"""Every SQL statement of pgmq-guide.md, run as written; where the guide is wrong, the
statement fails (or misleads) as asserted here, and the corrected form is tested beside it.
docs/pgmq-compat.md lists the differences."""

from __future__ import annotations

import asyncpg
import pytest

from tests.integration.queue.helpers import expect_error, ids


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


JOB = '{"job_type": "sap_sync", "entity": "work_order", "entity_id": 123}'


async def _queues(conn: asyncpg.Connection, *names: str) -> None:
    for name in names or ("background_jobs",):
        await conn.execute("SELECT pgmq.create($1)", name)


async def _jobs(conn: asyncpg.Connection, n: int, queue: str = "background_jobs") -> None:
    await conn.execute(
        "SELECT pgmq.send_batch($1, $2::jsonb[])",
        queue,
        [{"job_type": "barcode_generation", "wo_id": i} for i in range(1, n + 1)],
    )


# --- Core concepts -----------------------------------------------------------------------


async def test_create_queue(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pgmq.create('background_jobs');")
    assert await conn.fetchval("SELECT queue_name FROM pgmq.meta") == "background_jobs"


async def test_read_with_visibility_timeout(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    await _jobs(conn, 2)
    rows = await conn.fetch("SELECT * FROM pgmq.read('background_jobs', vt => 30, qty => 1);")
    assert [(r["msg_id"], r["read_ct"]) for r in rows] == [(1, 1)]


async def test_send_to_dead_letter_queue(conn: asyncpg.Connection) -> None:
    await _queues(conn, "dlq")
    assert (
        await conn.fetchval("SELECT pgmq.send('dlq', '{\"original_msg\": \"...\"}'::jsonb);") == 1
    )
    assert await conn.fetchval("SELECT message FROM pgmq.q_dlq") == {"original_msg": "..."}


# --- Queue management ---------------------------------------------------------------------


async def test_create_partitioned_queue(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """
        SELECT pgmq.create_partitioned(
            'high_volume_jobs',
            partition_interval => '1 day',
            retention_interval => '7 days'
        );
        """
    )
    row = await conn.fetchrow("SELECT * FROM pgmq_ext.partition_config")
    assert (row["queue_name"], row["partition_by"]) == ("high_volume_jobs", "time")
    assert await conn.fetchval("SELECT * FROM pgmq.send('high_volume_jobs', '{}'::jsonb)") == 1


async def test_create_multiple_queues(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """
        SELECT pgmq.create('email_notifications');
        SELECT pgmq.create('report_generation');
        SELECT pgmq.create('dlq');  -- Dead letter queue
        """
    )
    names = await conn.fetch("SELECT queue_name FROM pgmq.meta ORDER BY 1")
    assert [r["queue_name"] for r in names] == ["dlq", "email_notifications", "report_generation"]


async def test_list_queues(conn: asyncpg.Connection) -> None:
    await _queues(conn, "background_jobs", "email_notifications", "dlq")
    rows = await conn.fetch("SELECT * FROM pgmq.list_queues();")
    # The guide shows queue_name and created_at; the API returns two more columns.
    assert list(rows[0].keys()) == ["queue_name", "is_partitioned", "is_unlogged", "created_at"]
    assert sorted(r["queue_name"] for r in rows) == [
        "background_jobs",
        "dlq",
        "email_notifications",
    ]


async def test_drop_queue(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    assert await conn.fetchval("SELECT pgmq.drop_queue('background_jobs');") is True
    assert await conn.fetchval("SELECT to_regclass('pgmq.q_background_jobs')") is None


# --- Sending ------------------------------------------------------------------------------


async def test_send_single_message(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    msg_id = await conn.fetchval(
        """
        SELECT pgmq.send(
            'background_jobs',
            '{"job_type": "sap_sync", "entity": "work_order", "entity_id": 123}'::jsonb
        );
        """
    )
    assert msg_id == 1


async def test_send_with_delay_as_the_guide_writes_it_fails(conn: asyncpg.Connection) -> None:
    """The guide's `delay_seconds =>` is not a parameter of send(); the name is `delay`."""
    await _queues(conn)
    await expect_error(
        conn,
        """
        SELECT pgmq.send(
            'background_jobs',
            '{"job_type": "email_notification", "to": "user@example.com"}'::jsonb,
            delay_seconds => 300
        );
        """,
        match=r"function pgmq\.send\(unknown, jsonb, delay_seconds => integer\) does not exist",
        sqlstate="42883",
    )
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_background_jobs") == 0


async def test_send_with_delay_corrected(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    msg_id = await conn.fetchval(
        """
        SELECT pgmq.send(
            'background_jobs',
            '{"job_type": "email_notification", "to": "user@example.com"}'::jsonb,
            delay => 300
        );
        """
    )
    assert msg_id == 1
    assert await conn.fetch("SELECT * FROM pgmq.read('background_jobs', 30, 1)") == []
    delay = await conn.fetchval("SELECT vt - enqueued_at FROM pgmq.q_background_jobs")
    assert 299 <= delay.total_seconds() <= 360


async def test_send_batch(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    rows = await conn.fetch(
        """
        SELECT pgmq.send_batch(
            'background_jobs',
            ARRAY[
                '{"job_type": "barcode_generation", "wo_id": 1}'::jsonb,
                '{"job_type": "barcode_generation", "wo_id": 2}'::jsonb,
                '{"job_type": "barcode_generation", "wo_id": 3}'::jsonb,
                '{"job_type": "barcode_generation", "wo_id": 4}'::jsonb,
                '{"job_type": "barcode_generation", "wo_id": 5}'::jsonb
            ]
        );
        """
    )
    # The guide says "array of msg_ids"; it is a set of rows, one msg_id each.
    assert ids(rows, "send_batch") == [1, 2, 3, 4, 5]


# --- Reading ------------------------------------------------------------------------------


async def test_read_one_message(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    await conn.execute(f"SELECT pgmq.send('background_jobs', '{JOB}'::jsonb)")
    rows = await conn.fetch("SELECT * FROM pgmq.read('background_jobs', vt => 30, qty => 1);")
    assert [(r["msg_id"], r["read_ct"], r["message"]["job_type"]) for r in rows] == [
        (1, 1, "sap_sync")
    ]
    # The guide's fields, plus last_read_at and headers.
    assert {"msg_id", "read_ct", "enqueued_at", "vt", "message"} <= set(rows[0].keys())


async def test_read_multiple_messages(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    await _jobs(conn, 12)
    rows = await conn.fetch("SELECT * FROM pgmq.read('background_jobs', vt => 30, qty => 10);")
    assert ids(rows) == list(range(1, 11))


async def test_read_with_poll(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    await _jobs(conn, 1)
    rows = await conn.fetch(
        """
        SELECT * FROM pgmq.read_with_poll(
            'background_jobs',
            vt => 30,
            qty => 1,
            max_poll_seconds => 5
        );
        """
    )
    assert ids(rows) == [1]


# --- Deleting -----------------------------------------------------------------------------


async def test_delete(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    await _jobs(conn, 1)
    assert await conn.fetchval("SELECT pgmq.delete('background_jobs', msg_id => 1);") is True
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_background_jobs") == 0


async def test_archive(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    await _jobs(conn, 1)
    assert await conn.fetchval("SELECT pgmq.archive('background_jobs', msg_id => 1);") is True
    # The guide says the message moves to pgmq.q_background_jobs_archive: the archive of
    # queue <name> is pgmq.a_<name>.
    assert await conn.fetchval("SELECT to_regclass('pgmq.q_background_jobs_archive')") is None
    assert await conn.fetchval("SELECT msg_id FROM pgmq.a_background_jobs") == 1


async def test_delete_batch(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    await _jobs(conn, 6)
    await conn.execute(
        """
        SELECT pgmq.delete('background_jobs', msg_id => 1);
        SELECT pgmq.delete('background_jobs', msg_id => 2);
        SELECT pgmq.delete('background_jobs', msg_id => 3);
        """
    )
    rows = await conn.fetch("SELECT pgmq.delete('background_jobs', ARRAY[1,2,3]);")
    assert rows == []  # already deleted
    rows = await conn.fetch("SELECT pgmq.delete('background_jobs', ARRAY[4,5]);")
    assert sorted(ids(rows, "delete")) == [4, 5]
    assert ids(await conn.fetch("SELECT msg_id FROM pgmq.q_background_jobs")) == [6]


# --- Monitoring ---------------------------------------------------------------------------


async def test_queue_metrics(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    await _jobs(conn, 5)
    row = await conn.fetchrow(
        """
        SELECT
            queue_name,
            queue_length,
            newest_msg_age_sec,
            oldest_msg_age_sec,
            total_messages
        FROM pgmq.metrics('background_jobs');
        """
    )
    assert (row["queue_name"], row["queue_length"], row["total_messages"]) == (
        "background_jobs",
        5,
        5,
    )


async def test_dead_letter_queue_check(conn: asyncpg.Connection) -> None:
    await _queues(conn, "dlq")
    await _jobs(conn, 3, "dlq")
    rows = await conn.fetch("SELECT * FROM pgmq.read('dlq', vt => 300, qty => 100);")
    assert ids(rows) == [1, 2, 3]
    assert await conn.fetchval("SELECT COUNT(*) FROM pgmq.q_dlq;") == 3


ARCHIVE_QUERY = """
SELECT
    msg_id,
    enqueued_at,
    archived_at,
    message
FROM pgmq.{table}
WHERE archived_at >= NOW() - INTERVAL '24 hours'
ORDER BY archived_at DESC
LIMIT 100;
"""


async def test_archive_query_as_the_guide_writes_it_fails(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    await expect_error(
        conn,
        ARCHIVE_QUERY.format(table="q_background_jobs_archive"),
        match='relation "pgmq.q_background_jobs_archive" does not exist',
        sqlstate="42P01",
    )


async def test_archive_query_corrected(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    await _jobs(conn, 3)
    await conn.execute("SELECT pgmq.archive('background_jobs', ARRAY[1, 3]::bigint[])")
    rows = await conn.fetch(ARCHIVE_QUERY.format(table="a_background_jobs"))
    assert sorted(ids(rows)) == [1, 3]


# --- Performance --------------------------------------------------------------------------


INDEX = """
CREATE INDEX idx_background_jobs_vt
ON pgmq.q_background_jobs (vt)
{where};
"""


async def test_pending_index_as_the_guide_writes_it_fails(conn: asyncpg.Connection) -> None:
    """Queue tables have no `status` column: a message is pending while it is in the table."""
    await _queues(conn)
    await expect_error(
        conn,
        INDEX.format(where="WHERE status = 'pending'"),
        match='column "status" does not exist',
        sqlstate="42703",
    )


async def test_pending_index_corrected(conn: asyncpg.Connection) -> None:
    """Every queue already has an index on vt; the guide's index (without `status`) repeats it."""
    await _queues(conn)
    existing = await conn.fetch(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'pgmq' "
        "AND tablename = 'q_background_jobs' AND indexdef LIKE '%(vt)'"
    )
    assert len(existing) == 1
    await conn.execute(INDEX.format(where=""))
    assert await conn.fetchval("SELECT to_regclass('pgmq.idx_background_jobs_vt')") is not None


# --- Troubleshooting ----------------------------------------------------------------------


async def test_metrics_star(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    row = await conn.fetchrow("SELECT * FROM pgmq.metrics('background_jobs');")
    assert row["queue_length"] == 0


STUCK = """
SELECT * FROM pgmq.read('background_jobs', vt => 0, qty => 100)
WHERE enqueued_at < NOW() - INTERVAL '1 hour';
"""


async def test_stuck_messages_check_reads_every_visible_message(
    conn: asyncpg.Connection,
) -> None:
    """The guide's check runs, but it is a read: every visible message (up to 100) counts one
    more delivery, old or not; only the filter on the result is by age."""
    await _queues(conn)
    await _jobs(conn, 3)
    await conn.execute(
        "UPDATE pgmq.q_background_jobs SET enqueued_at = now() - interval '2 hours' "
        "WHERE msg_id = 1"
    )
    rows = await conn.fetch(STUCK)
    assert ids(rows) == [1]
    read_cts = await conn.fetch("SELECT read_ct FROM pgmq.q_background_jobs ORDER BY msg_id")
    assert [r["read_ct"] for r in read_cts] == [1, 1, 1]


async def test_stuck_messages_check_corrected(conn: asyncpg.Connection) -> None:
    """Look at the queue table instead: no side effects."""
    await _queues(conn)
    await _jobs(conn, 3)
    await conn.execute(
        "UPDATE pgmq.q_background_jobs SET enqueued_at = now() - interval '2 hours' "
        "WHERE msg_id = 1"
    )
    rows = await conn.fetch(
        "SELECT * FROM pgmq.q_background_jobs "
        "WHERE vt <= now() AND enqueued_at < NOW() - INTERVAL '1 hour'"
    )
    assert ids(rows) == [1]
    read_cts = await conn.fetch("SELECT read_ct FROM pgmq.q_background_jobs ORDER BY msg_id")
    assert [r["read_ct"] for r in read_cts] == [0, 0, 0]


async def test_reset_visibility_timeout(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    await _jobs(conn, 2)
    await conn.execute("SELECT pgmq.read('background_jobs', 3600, 1)")
    await conn.execute(
        """
        UPDATE pgmq.q_background_jobs
        SET vt = NOW()
        WHERE vt > NOW() + INTERVAL '5 minutes';
        """
    )
    rows = await conn.fetch("SELECT * FROM pgmq.read('background_jobs', 30, 10)")
    assert ids(rows) == [1, 2]


async def test_queue_growing_diagnosis(conn: asyncpg.Connection) -> None:
    await _queues(conn, "background_jobs", "dlq")
    await _jobs(conn, 4)
    assert await conn.fetchval("SELECT COUNT(*) FROM pgmq.q_dlq;") == 0
    assert await conn.fetchval("SELECT queue_length FROM pgmq.metrics('background_jobs');") == 4


async def test_table_sizes(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    rows = await conn.fetch(
        """
        SELECT
            schemaname,
            tablename,
            pg_size_pretty(pg_total_relation_size(schemaname||'.'||tablename)) as size
        FROM pg_tables
        WHERE schemaname = 'pgmq'
        ORDER BY pg_total_relation_size(schemaname||'.'||tablename) DESC;
        """
    )
    assert {"a_background_jobs", "q_background_jobs", "meta"} <= {r["tablename"] for r in rows}


ARCHIVE_OLD = """
SELECT pgmq.archive('background_jobs', msg_id)
FROM pgmq.{table}
WHERE enqueued_at < NOW() - INTERVAL '30 days';
"""


async def test_archive_old_messages_as_the_guide_writes_it_fails(
    conn: asyncpg.Connection,
) -> None:
    await _queues(conn)
    await expect_error(
        conn,
        ARCHIVE_OLD.format(table="q_background_jobs_archive"),
        match='relation "pgmq.q_background_jobs_archive" does not exist',
        sqlstate="42P01",
    )


@pytest.mark.parametrize(
    "statement",
    [
        ARCHIVE_OLD.format(table="q_background_jobs"),
        # One statement for the lot:
        "SELECT * FROM pgmq.archive('background_jobs', ARRAY(SELECT msg_id FROM "
        "pgmq.q_background_jobs WHERE enqueued_at < NOW() - INTERVAL '30 days'))",
    ],
)
async def test_archive_old_messages_corrected(conn: asyncpg.Connection, statement: str) -> None:
    await _queues(conn)
    await _jobs(conn, 3)
    await conn.execute(
        "UPDATE pgmq.q_background_jobs SET enqueued_at = now() - interval '40 days' "
        "WHERE msg_id IN (1, 2)"
    )
    await conn.execute(statement)
    assert ids(await conn.fetch("SELECT msg_id FROM pgmq.a_background_jobs ORDER BY 1")) == [1, 2]
    assert ids(await conn.fetch("SELECT msg_id FROM pgmq.q_background_jobs")) == [3]


async def test_vacuum(conn: asyncpg.Connection) -> None:
    await _queues(conn)
    await conn.execute("VACUUM ANALYZE pgmq.q_background_jobs;")
    assert await conn.fetchval(
        "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables "
        "WHERE schemaname = 'pgmq' AND relname = 'q_background_jobs'"
    )
