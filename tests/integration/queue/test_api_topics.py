"""Topics: bind_topic, unbind_topic, send_topic, send_batch_topic, list_topic_bindings,
test_routing and the validators."""

from __future__ import annotations

import asyncpg
import pytest

from tests.integration.queue.helpers import expect_error, queue_state


@pytest.fixture
def dsn(shared_queue_db: str) -> str:
    """The tests of this module share one database (see conftest)."""
    return shared_queue_db


BIND = "SELECT pgmq.bind_topic(pattern=>$1::text, queue_name=>$2::text)"


async def _queues(conn: asyncpg.Connection, *names: str) -> None:
    for name in names:
        await conn.execute("SELECT pgmq.create($1)", name)


async def _messages(conn: asyncpg.Connection, queue: str) -> list[dict[str, object]]:
    rows = await conn.fetch(
        "SELECT message FROM pgmq.q_" + queue + " ORDER BY msg_id"  # test queue names only
    )
    return [r["message"] for r in rows]


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("orders.created", ["orders.created"], ["orders", "orders.created.eu", "orders-created"]),
        ("orders.*", ["orders.created", "orders.x-1"], ["orders", "orders.a.b", "ordersXcreated"]),
        ("*.created", ["orders.created"], ["created", "a.b.created"]),
        ("orders.#", ["orders", "orders.a", "orders.a.b.c"], ["order", "ordersx", "x.orders"]),
        ("#.error", ["error", "db.error", "a.b.error"], ["errors", "db.error.x", "xerror"]),
        ("a.#.z", ["a.z", "a.b.z", "a.b.c.z"], ["a.bz", "az", "a.z.b"]),
        ("#", ["a", "a.b.c"], []),
        ("a.*.#", ["a.b", "a.b.c"], ["a"]),
    ],
)
async def test_routing_semantics(
    conn: asyncpg.Connection, pattern: str, matches: list[str], misses: list[str]
) -> None:
    await _queues(conn, "sink")
    await conn.execute(BIND, pattern, "sink")
    for key in matches:
        rows = await conn.fetch("SELECT * FROM pgmq.test_routing(routing_key=>$1::text)", key)
        assert [(r["pattern"], r["queue_name"]) for r in rows] == [(pattern, "sink")], key
    for key in misses:
        assert await conn.fetch("SELECT * FROM pgmq.test_routing($1)", key) == [], key


async def test_send_topic_reaches_every_matching_queue_once(conn: asyncpg.Connection) -> None:
    await _queues(conn, "all_orders", "created", "eu_orders", "other")
    await conn.execute(BIND, "orders.#", "all_orders")
    await conn.execute(BIND, "orders.*", "all_orders")  # two bindings, one message
    await conn.execute(BIND, "*.created", "created")
    await conn.execute(BIND, "orders.created.eu", "eu_orders")
    await conn.execute(BIND, "invoices.#", "other")
    sent = await conn.fetchval(
        "SELECT pgmq.send_topic(routing_key=>$1::text, msg=>$2::jsonb)",
        "orders.created",
        {"n": 1},
    )
    assert sent == 2
    assert await _messages(conn, "all_orders") == [{"n": 1}]
    assert await _messages(conn, "created") == [{"n": 1}]
    assert await _messages(conn, "eu_orders") == []
    assert await conn.fetchval("SELECT pgmq.send_topic('nobody.listens', '{}'::jsonb)") == 0


async def test_send_topic_headers_and_delay(conn: asyncpg.Connection) -> None:
    await _queues(conn, "later")
    await conn.execute(BIND, "jobs.*", "later")
    assert (
        await conn.fetchval(
            "SELECT pgmq.send_topic(routing_key=>'jobs.x'::text, msg=>'{}'::jsonb, "
            "headers=>$1::jsonb, delay=>$2::integer)",
            {"h": 1},
            3600,
        )
        == 1
    )
    assert await conn.fetchval("SELECT pgmq.send_topic('jobs.y', '{}'::jsonb, 3600)") == 1
    rows = await conn.fetch(
        "SELECT headers, vt > now() + interval '50 minutes' AS later FROM pgmq.q_later"
    )
    assert [(r["headers"], r["later"]) for r in rows] == [({"h": 1}, True), (None, True)]
    assert await conn.fetch("SELECT * FROM pgmq.read('later', 30, 10)") == []


async def test_send_topic_is_part_of_the_callers_transaction(conn: asyncpg.Connection) -> None:
    await _queues(conn, "t1", "t2")
    await conn.execute(BIND, "x.#", "t1")
    await conn.execute(BIND, "#", "t2")
    tx = conn.transaction()
    await tx.start()
    assert await conn.fetchval("SELECT pgmq.send_topic('x.y', '{}'::jsonb)") == 2
    await tx.rollback()
    assert await _messages(conn, "t1") == await _messages(conn, "t2") == []


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("SELECT * FROM pgmq.send_batch_topic(routing_key=>$1::text, msgs=>$2::jsonb[])", []),
        (
            "SELECT * FROM pgmq.send_batch_topic(routing_key=>$1::text, msgs=>$2::jsonb[], "
            "headers=>$3::jsonb[])",
            [[{"h": 1}, {"h": 2}]],
        ),
        ("SELECT * FROM pgmq.send_batch_topic($1, $2::jsonb[], 0)", []),
        ("SELECT * FROM pgmq.send_batch_topic($1, $2::jsonb[], now())", []),
        ("SELECT * FROM pgmq.send_batch_topic($1, $2::jsonb[], $3::jsonb[], 0)", [[{}, {}]]),
        ("SELECT * FROM pgmq.send_batch_topic($1, $2::jsonb[], $3::jsonb[], now())", [[{}, {}]]),
    ],
)
async def test_send_batch_topic_returns_queue_and_msg_id(
    conn: asyncpg.Connection, call: str, args: list[object]
) -> None:
    await _queues(conn, "b-1", "b2", "unbound")
    await conn.execute(BIND, "batch.*", "b2")
    await conn.execute(BIND, "batch.#", "b-1")
    rows = await conn.fetch(call, "batch.go", [{"i": 1}, {"i": 2}], *args)
    assert [tuple(r.keys()) for r in rows[:1]] == [("queue_name", "msg_id")]
    stored = {
        q: [r["msg_id"] for r in await conn.fetch(f'SELECT msg_id FROM pgmq."q_{q}" ORDER BY 1')]
        for q in ("b-1", "b2")
    }
    assert [(r["queue_name"], r["msg_id"]) for r in rows] == [
        ("b-1", stored["b-1"][0]),
        ("b-1", stored["b-1"][1]),
        ("b2", stored["b2"][0]),
        ("b2", stored["b2"][1]),
    ]
    assert (
        await conn.fetch("SELECT * FROM pgmq.send_batch_topic('none.here', $1::jsonb[])", [{}])
        == []
    )


async def test_bindings_list_unbind_and_cascade(conn: asyncpg.Connection) -> None:
    await _queues(conn, "q1", "Q-2")
    await conn.execute(BIND, "a.*", "q1")
    await conn.execute(BIND, "a.*", "q1")  # idempotent
    await conn.execute(BIND, "b.#", "Q-2")
    rows = await conn.fetch("SELECT * FROM pgmq.list_topic_bindings()")
    assert [tuple(r.keys()) for r in rows[:1]] == [
        ("pattern", "queue_name", "bound_at", "compiled_regex")
    ]
    assert sorted((r["pattern"], r["queue_name"]) for r in rows) == [("a.*", "q1"), ("b.#", "q-2")]
    mine = await conn.fetch("SELECT * FROM pgmq.list_topic_bindings(queue_name=>'Q-2'::text)")
    assert [(r["pattern"], r["queue_name"]) for r in mine] == [("b.#", "q-2")]
    unbind = "SELECT pgmq.unbind_topic(pattern=>$1::text, queue_name=>$2::text)"
    assert await conn.fetchval(unbind, "a.*", "q1") is True
    assert await conn.fetchval(unbind, "a.*", "q1") is False
    await conn.execute("SELECT pgmq.drop_queue('q-2')")
    assert await conn.fetch("SELECT * FROM pgmq.list_topic_bindings()") == []


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "^routing_key cannot be NULL or empty"),
        (None, "^routing_key cannot be NULL or empty"),
        ("a" * 256, "^routing_key length cannot exceed 255 characters, got 256 characters"),
        ("logs.error!", "^routing_key contains invalid characters"),
        ("logs.*", "^routing_key contains invalid characters"),
        ("logs error", "^routing_key contains invalid characters"),
        (".logs", "^routing_key cannot start with a dot"),
        ("logs.", "^routing_key cannot end with a dot"),
        ("logs..error", "^routing_key cannot contain consecutive dots"),
        ("l'; DROP TABLE pgmq.meta; --", "^routing_key contains invalid characters"),
    ],
)
async def test_bad_routing_keys(conn: asyncpg.Connection, key: str | None, message: str) -> None:
    await _queues(conn, "sink")
    await conn.execute(BIND, "#", "sink")
    before = await queue_state(conn)
    for call in (
        "SELECT pgmq.validate_routing_key($1)",
        "SELECT * FROM pgmq.test_routing($1)",
        "SELECT pgmq.send_topic($1, '{}'::jsonb)",
        "SELECT * FROM pgmq.send_batch_topic($1, ARRAY['{}'::jsonb])",
    ):
        await expect_error(conn, call, key, match=message, sqlstate="22023")
    assert await queue_state(conn) == before
    assert await _messages(conn, "sink") == []


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "^pattern cannot be NULL or empty"),
        ("a" * 256, "^pattern length cannot exceed 255 characters"),
        ("logs.error!", "^pattern contains invalid characters"),
        (".logs.*", "^pattern cannot start with a dot"),
        ("logs.*.", "^pattern cannot end with a dot"),
        ("logs..*", "^pattern cannot contain consecutive dots"),
        ("logs.**", r"^pattern cannot contain consecutive stars \(\*\*\)"),
        ("logs.##", r"^pattern cannot contain consecutive hashes \(##\)"),
        ("logs.*#", r"^pattern cannot contain adjacent wildcards \(\*# or #\*\)"),
        ("logs.#*", r"^pattern cannot contain adjacent wildcards"),
    ],
)
async def test_bad_patterns(conn: asyncpg.Connection, pattern: str, message: str) -> None:
    await _queues(conn, "sink")
    await expect_error(conn, "SELECT pgmq.validate_topic_pattern($1)", pattern, match=message)
    await expect_error(conn, BIND, pattern, "sink", match=message, sqlstate="22023")
    assert await conn.fetch("SELECT * FROM pgmq.list_topic_bindings()") == []


async def test_validators_answer_true(conn: asyncpg.Connection) -> None:
    assert await conn.fetchval("SELECT pgmq.validate_routing_key('app.user-service.auth_1')")
    assert await conn.fetchval("SELECT pgmq.validate_topic_pattern('app.*.#')")


async def test_binding_needs_an_existing_queue(conn: asyncpg.Connection) -> None:
    await expect_error(
        conn,
        BIND,
        "a.b",
        "nope",
        match=r'^Queue "nope" does not exist\. Create the queue first using pgmq\.create\(\)',
        sqlstate="42P01",
    )
    await expect_error(conn, BIND, "a.b", "", match="^queue_name cannot be NULL or empty")
    await expect_error(conn, BIND, "a.b", None, match="^queue_name cannot be NULL or empty")


async def test_send_topic_refuses_null_message_and_negative_delay(conn: asyncpg.Connection) -> None:
    await _queues(conn, "sink")
    await conn.execute(BIND, "#", "sink")
    await expect_error(
        conn, "SELECT pgmq.send_topic('a', NULL::jsonb)", match="^msg cannot be NULL"
    )
    await expect_error(
        conn,
        "SELECT pgmq.send_topic('a', '{}'::jsonb, -1)",
        match="^delay cannot be negative, got: -1",
    )
    await expect_error(
        conn,
        "SELECT * FROM pgmq.send_batch_topic('a', ARRAY[]::jsonb[])",
        match="^msgs cannot be NULL or empty",
    )
    await expect_error(
        conn,
        "SELECT * FROM pgmq.send_batch_topic('a', ARRAY['{}'::jsonb], ARRAY[]::jsonb[])",
        match=r"^headers array length \(0\) must match msgs array length \(1\)",
    )
    assert await _messages(conn, "sink") == []
