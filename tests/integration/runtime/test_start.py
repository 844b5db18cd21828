"""Starting runs from code, inside the caller's transaction, and refusing bad input."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from orchestrator.db.named_sql import named_queries
from orchestrator.errors import NotFound, QueueError
from orchestrator.runtime import start, start_many
from orchestrator.runtime.handoff import MAX_PAYLOAD_BYTES
from tests.integration.runtime.conftest import Runtime

PIPE = """
pipeline: orders
steps:
  intake: {handler: t:intake, delay: 2s, next: ship}
  ship: {handler: t:ship}
"""


async def test_start_in_a_transaction_that_rolls_back_enqueues_nothing(rt: Runtime) -> None:
    await rt.apply(PIPE)
    with pytest.raises(RuntimeError):
        async with rt.conn.transaction():
            await rt.conn.execute("INSERT INTO side_effects (note) VALUES ('order row')")
            await start("orders", {"id": 1}, conn=rt.conn)
            await start_many("orders", [{"id": 2}, {"id": 3}], conn=rt.conn)
            raise RuntimeError("the application changed its mind")
    assert await rt.count("orders__intake") == 0
    assert await rt.conn.fetchval("SELECT count(*) FROM side_effects") == 0


async def test_start_in_a_transaction_that_commits(rt: Runtime) -> None:
    await rt.apply(PIPE)
    async with rt.conn.transaction():
        await rt.conn.execute("INSERT INTO side_effects (note) VALUES ('order row')")
        first = await start("orders", {"id": 1}, conn=rt.conn)
        more = await start_many("orders", [{"id": 2}, {"id": 3}], conn=rt.conn)
    rows = await rt.rows("orders__intake")
    assert [r["message"]["id"] for r in rows] == [1, 2, 3]
    assert [r["headers"]["run_id"] for r in rows] == [str(first), *map(str, more)]
    assert len({first, *more}) == 3 and all(isinstance(r, uuid.UUID) for r in [first, *more])
    head = rows[0]["headers"]
    assert head["step"] == "intake" and head["pipeline"] == "orders"
    assert head["parent_id"] is None and head["parent_step"] is None
    assert head["traceparent"].startswith(f"00-{first.hex}-")


async def test_a_start_without_an_entry_contract_is_one_statement(rt: Runtime) -> None:
    """The contract look-up and the start travel together: one round trip per start."""
    await rt.apply(PIPE)
    logged: list[str] = []

    def log(query: Any) -> None:
        logged.append(query.query)

    rt.conn.add_query_logger(log)  # called soon after each query: read once others ran
    first = await start("orders", {"id": 1}, conn=rt.conn)
    more = await start_many("orders", [{"id": 2}, {"id": 3}], conn=rt.conn)
    rows = await rt.rows("orders__intake")
    rt.conn.remove_query_logger(log)
    single = named_queries("orchestrator.runtime")["start_runs_unless_contract"]
    assert logged[:2] == [single, single]  # then the read of the queue, if logged by now
    assert [r["headers"]["run_id"] for r in rows] == [str(first), *map(str, more)]


async def test_start_honours_the_entry_delay_and_an_override(rt: Runtime) -> None:
    await rt.apply(PIPE)
    await start("orders", {}, conn=rt.conn)
    await start("orders", {}, conn=rt.conn, delay=timedelta(minutes=10))
    await start("orders", {}, conn=rt.conn, delay=0)
    waits = [
        await rt.seconds_until_visible("orders__intake", r["msg_id"])
        for r in await rt.rows("orders__intake")
    ]
    assert 1 < waits[0] <= 2
    assert 590 < waits[1] <= 600
    assert waits[2] <= 0


async def test_start_with_a_dsn(rt: Runtime) -> None:
    await rt.apply(PIPE)
    run_id = await start("orders", {"x": 1}, dsn=rt.dsn)
    [row] = await rt.rows("orders__intake")
    assert row["headers"]["run_id"] == str(run_id)


async def test_start_many_with_nothing_does_nothing(rt: Runtime) -> None:
    await rt.apply(PIPE)
    assert await start_many("orders", [], conn=rt.conn) == []


async def test_start_runs_from_sql(rt: Runtime) -> None:
    await rt.apply(PIPE)
    ids = await rt.conn.fetch(
        "SELECT * FROM orchestrator.start_runs('orders', ARRAY['{\"a\": 1}']::jsonb[],"
        ' ARRAY[\'{"by": "cron"}\']::jsonb[], 0)'
    )
    [row] = await rt.rows("orders__intake")
    assert row["headers"]["run_id"] == str(ids[0][0]) and row["headers"]["by"] == "cron"


async def test_unknown_pipeline(rt: Runtime) -> None:
    with pytest.raises(NotFound, match="pipeline 'nope' is not applied; run orchestrator apply"):
        await start("nope", {}, conn=rt.conn)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], r"payload must be a JSON object \(a dict\), not an array"),
        ("text", "not a string"),
        (None, "not null"),
        ({"a": "x\x00y"}, r"payload\['a'\] contains a NUL character"),
        ({"a\x00": 1}, "a key of payload contains a NUL character"),
        ({"nested": [{"deep": "\x00"}]}, r"payload\['nested'\]\[0\]\['deep'\] contains a NUL"),
        ({1: "int key"}, "not JSON-serialisable"),
        ({"x": object()}, "not JSON-serialisable"),
        ({"big": "x" * MAX_PAYLOAD_BYTES}, "bytes of JSON; the limit is 1,048,576"),
    ],
)
async def test_bad_payloads_are_refused(rt: Runtime, payload: Any, message: str) -> None:
    await rt.apply(PIPE)
    with pytest.raises(QueueError, match=message):
        await start("orders", payload, conn=rt.conn)
    assert await rt.count("orders__intake") == 0


async def test_escaped_backslash_before_u0000_is_not_a_nul(rt: Runtime) -> None:
    await rt.apply(PIPE)
    await start("orders", {"path": "C:\\u0000"}, conn=rt.conn)
    [row] = await rt.rows("orders__intake")
    assert row["message"] == {"path": "C:\\u0000"}


async def test_bad_arguments_are_refused(rt: Runtime) -> None:
    await rt.apply(PIPE)
    with pytest.raises(QueueError, match="headers may not set run_id"):
        await start("orders", {}, conn=rt.conn, headers={"run_id": "mine"})
    with pytest.raises(QueueError, match="delay must be a number of seconds >= 0"):
        await start("orders", {}, conn=rt.conn, delay=-1)
    with pytest.raises(QueueError, match="delay must be seconds or a timedelta"):
        await start("orders", {}, conn=rt.conn, delay="soon")  # type: ignore[arg-type]
    with pytest.raises(QueueError, match="payload 2 of 2 must be a JSON object"):
        await start_many("orders", [{}, []], conn=rt.conn)  # type: ignore[list-item]
    with pytest.raises(QueueError, match="takes a list of payloads"):
        await start_many("orders", {"a": 1}, conn=rt.conn)  # type: ignore[arg-type]
    assert await rt.count("orders__intake") == 0


async def test_sql_refuses_a_payload_that_is_not_an_object(rt: Runtime) -> None:
    await rt.apply(PIPE)
    import asyncpg

    with pytest.raises(asyncpg.InvalidParameterValueError, match="payload 2 of 2 is array"):
        await rt.conn.execute(
            "SELECT orchestrator.start_runs('orders', ARRAY['{}', '[]']::jsonb[])"
        )


async def test_start_on_a_connection_without_our_codecs(rt: Runtime) -> None:
    import asyncpg

    await rt.apply(PIPE)
    raw = await asyncpg.connect(rt.dsn)  # an application's own connection, default codecs
    try:
        async with raw.transaction():
            run_id = await start("orders", {"from": "app"}, conn=raw)
    finally:
        await raw.close()
    [row] = await rt.rows("orders__intake")
    assert row["message"] == {"from": "app"} and row["headers"]["run_id"] == str(run_id)
