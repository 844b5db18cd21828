"""Bad input: a clear error, and nothing changed."""

from __future__ import annotations

import asyncpg
import pytest

from tests.integration.queue.helpers import expect_error, queue_state

# Names that must never become a queue (nor reach SQL unquoted).
INVALID_NAMES = [
    "a; drop table x",
    "x; DROP TABLE pgmq.meta; --",
    "q'); DROP TABLE pgmq.meta; --",
    'q"; DROP TABLE pgmq.meta; --',
    "it's",
    'say "hi"',
    "a--b",
    "a b",
    " a",
    "a.b",
    "pgmq.q_x",
    "$x",
    "a\tb",
    "a\nb",
    "qu\u0435ue",  # Cyrillic ie
    "\u051bueue",  # Cyrillic qa
    "\uff51ueue",  # full-width q
    "queue\u200b",  # zero-width space
    "ß",
    "a\\b",
    "a/*b*/",
    "%I",
]


# What PGMQ refuses is refused with its text; anything else outside the set with ours.
_PGMQ_REFUSAL = r"^queue name contains invalid characters: \$, ;, --, or \\' \(got E?'.*'\)$"
_OUR_REFUSAL = r"^invalid queue name E?'.*': use only letters a-z, digits, underscores and hyphens$"


def _refusal(name: str) -> str:
    return _PGMQ_REFUSAL if any(c in name for c in ("$", ";", "--", "'")) else _OUR_REFUSAL


async def test_invalid_names_are_refused_by_every_create(conn: asyncpg.Connection) -> None:
    before = await queue_state(conn)
    for name in INVALID_NAMES:
        for call in (
            "SELECT pgmq.create($1)",
            "SELECT pgmq.create_unlogged($1)",
            "SELECT pgmq.create_partitioned($1)",
            "SELECT pgmq.create_partitioned($1, '1 day', '7 days')",
            "SELECT pgmq.validate_queue_name($1)",
        ):
            await expect_error(conn, call, name, match=_refusal(name), sqlstate="22023")
    assert await queue_state(conn) == before


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "queue name must not be empty"),
        (None, "queue name must not be null"),
        ("x" * 48, "queue name is too long, maximum length is 47 characters: 'x{48}' has 48"),
        ("é" * 48, "queue name is too long, maximum length is 47 characters: 'é{48}' has 48"),
        ("x" * 200, "queue name is too long, maximum length is 47 characters: 'x{60}' has 200"),
    ],
)
async def test_empty_null_and_long_names(
    conn: asyncpg.Connection, name: str | None, message: str
) -> None:
    before = await queue_state(conn)
    for call in ("create", "create_unlogged", "create_partitioned"):
        await expect_error(
            conn, f"SELECT pgmq.{call}($1)", name, match=f"^{message}$", sqlstate="22023"
        )
    assert await queue_state(conn) == before


UNKNOWN_QUEUE_CALLS = [
    "SELECT * FROM pgmq.send($1, '{}'::jsonb)",
    "SELECT * FROM pgmq.send($1, '{}'::jsonb, '{}'::jsonb)",
    "SELECT * FROM pgmq.send($1, '{}'::jsonb, 0)",
    "SELECT * FROM pgmq.send($1, '{}'::jsonb, now())",
    "SELECT * FROM pgmq.send($1, '{}'::jsonb, '{}'::jsonb, 0)",
    "SELECT * FROM pgmq.send($1, '{}'::jsonb, '{}'::jsonb, now())",
    "SELECT * FROM pgmq.send_batch($1, ARRAY['{}']::jsonb[])",
    "SELECT * FROM pgmq.send_batch($1, ARRAY['{}']::jsonb[], ARRAY['{}']::jsonb[])",
    "SELECT * FROM pgmq.send_batch($1, ARRAY['{}']::jsonb[], 0)",
    "SELECT * FROM pgmq.send_batch($1, ARRAY['{}']::jsonb[], now())",
    "SELECT * FROM pgmq.send_batch($1, ARRAY['{}']::jsonb[], ARRAY['{}']::jsonb[], 0)",
    "SELECT * FROM pgmq.send_batch($1, ARRAY['{}']::jsonb[], ARRAY['{}']::jsonb[], now())",
    "SELECT * FROM pgmq.read($1, 30, 1)",
    "SELECT * FROM pgmq.read($1, 30, 1, '{\"a\": 1}')",
    "SELECT * FROM pgmq.read_with_poll($1, 30, 1, 1, 10)",
    "SELECT * FROM pgmq.pop($1)",
    "SELECT * FROM pgmq.pop($1, 5)",
    "SELECT * FROM pgmq.set_vt($1, 1::bigint, 10)",
    "SELECT * FROM pgmq.set_vt($1, 1::bigint, now())",
    "SELECT * FROM pgmq.set_vt($1, ARRAY[1]::bigint[], 10)",
    "SELECT * FROM pgmq.set_vt($1, ARRAY[1]::bigint[], now())",
    "SELECT pgmq.delete($1, 1::bigint)",
    "SELECT * FROM pgmq.delete($1, ARRAY[1]::bigint[])",
    "SELECT pgmq.archive($1, 1::bigint)",
    "SELECT * FROM pgmq.archive($1, ARRAY[1]::bigint[])",
    "SELECT pgmq.purge_queue($1)",
    "SELECT * FROM pgmq.metrics($1)",
    "SELECT pgmq.enable_notify_insert($1)",
    "SELECT pgmq.disable_notify_insert($1)",
    "SELECT * FROM pgmq_ext.run_maintenance($1)",
]


async def test_unknown_queue(conn: asyncpg.Connection, queue: str) -> None:
    before = await queue_state(conn)
    for call in UNKNOWN_QUEUE_CALLS:
        for name in ["nope", "Nope", "x" * 60, "a; drop table x", 'q"; DROP TABLE pgmq.meta; --']:
            error = await expect_error(
                conn, call, name, match=f'^queue "{name}" does not exist$', sqlstate="42P01"
            )
            assert "pgmq.create()" in (error.hint or ""), call
    assert await queue_state(conn) == before


async def test_unknown_queue_with_a_prefix_of_a_real_table(conn: asyncpg.Connection) -> None:
    """A name that only resolves after truncation to 63 bytes is still unknown."""
    name = "y" * 47
    await conn.execute("SELECT pgmq.create($1)", name)
    await expect_error(
        conn,
        "SELECT * FROM pgmq.send($1, '{}'::jsonb)",
        name + "z" * 20,
        match="does not exist",
        sqlstate="42P01",
    )
    assert await conn.fetchval(f"SELECT count(*) FROM pgmq.q_{name}") == 0


async def test_null_queue_name_in_calls(conn: asyncpg.Connection, queue: str) -> None:
    before = await queue_state(conn)
    for call in UNKNOWN_QUEUE_CALLS[:-1]:
        await expect_error(
            conn, call, None, match="^queue name must not be null$", sqlstate="22023"
        )
    assert await queue_state(conn) == before


async def test_drop_queue_with_bad_names_changes_nothing(
    conn: asyncpg.Connection, queue: str
) -> None:
    before = await queue_state(conn)
    for name in [*INVALID_NAMES, None, "", "x" * 100]:
        assert await conn.fetchval("SELECT pgmq.drop_queue($1)", name) is False
    assert await queue_state(conn) == before


async def _assert_nothing_sent(conn: asyncpg.Connection) -> None:
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_q") == 0
    assert (await conn.fetchrow("SELECT * FROM pgmq.metrics('q')"))["total_messages"] == 0


BAD_SENDS: list[tuple[str, list[object], str]] = [
    (
        "pgmq.send_batch($1, $2::jsonb[])",
        [[]],
        r"^msgs cannot be NULL or empty: send_batch needs at least one message \(msgs is empty\)$",
    ),
    (
        "pgmq.send_batch($1, $2::jsonb[])",
        [None],
        r"^msgs cannot be NULL or empty: send_batch needs at least one message \(msgs is NULL\)$",
    ),
    (
        "pgmq.send_batch($1, $2::jsonb[], 5)",
        [[]],
        r"^msgs cannot be NULL or empty: send_batch needs at least one message \(msgs is empty\)$",
    ),
    (
        "pgmq.send_batch($1, $2::jsonb[], now())",
        [None],
        r"^msgs cannot be NULL or empty: send_batch needs at least one message \(msgs is NULL\)$",
    ),
    (
        "pgmq.send_batch($1, $2::jsonb[], $3::jsonb[])",
        [[], []],
        r"^msgs cannot be NULL or empty: send_batch needs at least one message \(msgs is empty\)$",
    ),
    (
        "pgmq.send_batch($1, $2::jsonb[], $3::jsonb[])",
        [[{}, {}], [{}]],
        r"^headers array length \(1\) must match msgs array length \(2\): pass one header",
    ),
    (
        "pgmq.send_batch($1, $2::jsonb[], $3::jsonb[], 0)",
        [[{}], [{}, {}, {}]],
        r"^headers array length \(3\) must match msgs array length \(1\): pass one header",
    ),
    (
        "pgmq.send_batch($1, $2::jsonb[], $3::jsonb[], now())",
        [[{}], []],
        r"^headers array length \(0\) must match msgs array length \(1\): pass one header",
    ),
    (
        "pgmq.send($1, '{}'::jsonb, $2::integer)",
        [-1],
        "^delay must be a number of seconds >= 0, got -1$",
    ),
    (
        "pgmq.send($1, '{}'::jsonb, $2::integer)",
        [None],
        "^delay must be a number of seconds >= 0, got NULL$",
    ),
    (
        "pgmq.send($1, '{}'::jsonb, '{}'::jsonb, $2::integer)",
        [-5],
        "^delay must be a number of seconds >= 0, got -5$",
    ),
    (
        "pgmq.send($1, '{}'::jsonb, $2::timestamptz)",
        [None],
        "^delay must be a timestamp, got NULL$",
    ),
    (
        "pgmq.send_batch($1, ARRAY['{}']::jsonb[], $2::integer)",
        [-1],
        "^delay must be a number of seconds >= 0, got -1$",
    ),
    (
        "pgmq.send_batch($1, ARRAY['{}']::jsonb[], $2::timestamptz)",
        [None],
        "^delay must be a timestamp, got NULL$",
    ),
]


async def test_bad_sends(conn: asyncpg.Connection, queue: str) -> None:
    for call, args, message in BAD_SENDS:
        await expect_error(
            conn, f"SELECT * FROM {call}", queue, *args, match=message, sqlstate="22023"
        )
        await _assert_nothing_sent(conn)


BAD_READS: list[tuple[str, list[object], str]] = [
    ("pgmq.read($1, 30, $2)", [0], "^qty must be a positive number of messages, got 0$"),
    ("pgmq.read($1, 30, $2)", [-3], "^qty must be a positive number of messages, got -3$"),
    ("pgmq.read($1, 30, $2)", [None], "^qty must be a positive number of messages, got NULL$"),
    ("pgmq.read($1, $2, 1)", [-1], "^vt must be a number of seconds >= 0, got -1$"),
    ("pgmq.read($1, $2, 1)", [None], "^vt must be a number of seconds >= 0, got NULL$"),
    ("pgmq.read_with_poll($1, 30, $2)", [0], "^qty must be a positive number"),
    ("pgmq.read_with_poll($1, $2, 1)", [-1], "^vt must be a number of seconds >= 0"),
    ("pgmq.read_with_poll($1, 30, 1, $2)", [-1], "^max_poll_seconds must be >= 0, got -1$"),
    ("pgmq.read_with_poll($1, 30, 1, 1, $2)", [0], "^poll_interval_ms must be > 0, got 0$"),
    ("pgmq.pop($1, $2)", [0], "^qty must be a positive number of messages, got 0$"),
    ("pgmq.pop($1, $2)", [-1], "^qty must be a positive number of messages, got -1$"),
    ("pgmq.set_vt($1, 1::bigint, $2::integer)", [-1], "^vt must be a number of seconds >= 0"),
    ("pgmq.set_vt($1, 1::bigint, $2::timestamptz)", [None], "^vt must be a timestamp, got NULL$"),
    ("pgmq.set_vt($1, ARRAY[1]::bigint[], $2::integer)", [-10], "^vt must be a number"),
    (
        "pgmq.set_vt($1, ARRAY[1]::bigint[], $2::timestamptz)",
        [None],
        "^vt must be a timestamp, got NULL$",
    ),
]


async def test_bad_reads(conn: asyncpg.Connection, queue: str) -> None:
    await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    before = await conn.fetchrow("SELECT * FROM pgmq.q_q")
    for call, args, message in BAD_READS:
        await expect_error(
            conn, f"SELECT * FROM {call}", queue, *args, match=message, sqlstate="22023"
        )
        assert await conn.fetchrow("SELECT * FROM pgmq.q_q") == before, call


BAD_PARTITION_SETTINGS: list[tuple[str | None, str | None, str]] = [
    ("abc", "7 days", "partition_interval 'abc' is neither a whole number"),
    ("1 day", "forever", "retention_interval 'forever' is neither a whole number"),
    ("10", "1 day", "must both be numbers of messages or both be time intervals"),
    ("1 day", "100", "must both be numbers of messages or both be time intervals"),
    ("0", "100", "^partition_interval must be greater than 0, got '0'$"),
    ("10", "0", "^retention_interval must be greater than 0, got '0'$"),
    ("-5", "100", "^partition_interval must be greater than 0, got '-5'$"),
    ("99999999999999999999", "100", "^partition_interval '99999999999999999999' is too large$"),
    ("30 seconds", "1 day", "must be whole months or a fixed length of at least 1 minute"),
    ("1 month 2 days", "1 year", "must be whole months or a fixed length"),
    ("1 day", "0 days", "^retention_interval must be greater than 0, got '0 days'$"),
    ("1 day", "-1 day", "^retention_interval must be greater than 0"),
    (None, "100", "must not be NULL"),
    ("10", None, "must not be NULL"),
]


async def test_bad_partition_settings(conn: asyncpg.Connection) -> None:
    before = await queue_state(conn)
    for partition_interval, retention_interval, message in BAD_PARTITION_SETTINGS:
        await expect_error(
            conn,
            "SELECT pgmq.create_partitioned('p', $1, $2)",
            partition_interval,
            retention_interval,
            match=message,
            sqlstate="22023",
        )
    assert await queue_state(conn) == before


async def test_bad_notify_throttle(conn: asyncpg.Connection, queue: str) -> None:
    before = await queue_state(conn)
    for value in (-1, None):
        await expect_error(
            conn,
            "SELECT pgmq.enable_notify_insert($1, $2)",
            queue,
            value,
            match="^throttle_interval_ms must be non-negative",
            sqlstate="22023",
        )
    assert await queue_state(conn) == before


async def test_name_taken_by_another_object(conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE VIEW pgmq.q_taken AS SELECT 1 AS one")
    await conn.execute("CREATE TABLE pgmq.a_other (x int)")
    before = await queue_state(conn)
    for name in ("taken", "other"):
        await expect_error(
            conn,
            "SELECT pgmq.create($1)",
            name,
            match=f'^cannot create queue "{name}": the name pgmq.q_{name} or pgmq.a_{name} is '
            "taken by another object$",
            sqlstate="42P07",
        )
    assert await queue_state(conn) == before


async def test_ambiguous_untyped_calls_need_casts(conn: asyncpg.Connection, queue: str) -> None:
    """As with PGMQ: an untyped parameter matches several overloads; a cast picks one."""
    await expect_error(
        conn, "SELECT pgmq.delete($1, $2)", queue, "1", match="is not unique", sqlstate="42725"
    )
    await expect_error(
        conn,
        "SELECT pgmq.send('q', '{}', '{}')",
        match="is not unique",
        sqlstate="42725",
    )
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_q") == 0
