"""Flow control in the store: token buckets, slots, grouped reads, pause, cancel, keyed starts."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest

from orchestrator import cancel, pause, resume, start, start_keyed
from orchestrator.db import connect
from orchestrator.db.named_sql import named_queries
from orchestrator.errors import NotFound, QueueError
from tests.integration.runtime.conftest import Runtime, noop

_Q = named_queries("orchestrator.runtime")
TAKE_TOKENS = "SELECT granted, wait FROM orchestrator.take_tokens($1, $2, $3, $4)"
TAKE_SLOTS = "SELECT orchestrator.take_slots($1, $2, $3, $4, $5)"

PIPE = """
pipeline: orders
steps:
  intake: {handler: t:intake, next: [ship, bill]}
  ship: {handler: t:ship}
  bill: {handler: t:bill}
  close: {handler: t:close, after: [ship, bill]}
"""


async def take(rt: Runtime, name: str, rate: float, burst: float, wanted: int) -> Any:
    return await rt.conn.fetchrow(TAKE_TOKENS, name, rate, burst, wanted)


async def test_a_new_bucket_grants_one_token_then_says_when_the_next_is_due(rt: Runtime) -> None:
    first = await take(rt, "b", 2.0, 2.0, 5)
    assert (first["granted"], first["wait"]) == (1, 0)
    empty = await take(rt, "b", 2.0, 2.0, 5)
    assert empty["granted"] == 0
    assert 0 < empty["wait"] <= 0.5
    await asyncio.sleep(empty["wait"])
    assert (await take(rt, "b", 2.0, 2.0, 5))["granted"] == 1


async def test_a_rested_bucket_holds_its_burst_and_no_more(rt: Runtime) -> None:
    await take(rt, "b", 1000.0, 3.0, 1)
    await asyncio.sleep(0.1)
    assert (await take(rt, "b", 1000.0, 3.0, 10))["granted"] == 3
    await rt.conn.execute(_Q["give_tokens"], "b", 2)
    assert (await take(rt, "b", 0.001, 3.0, 10))["granted"] == 2


async def test_concurrent_takers_never_get_more_than_the_bucket_holds(rt: Runtime) -> None:
    await take(rt, "shared", 0.001, 50.0, 1)
    await rt.conn.execute("UPDATE orchestrator.rate_buckets SET tokens = 50")
    conns = [await connect(rt.dsn) for _ in range(4)]
    try:

        async def drain(conn: Any) -> int:
            got = 0
            for _ in range(30):
                row = await conn.fetchrow(TAKE_TOKENS, "shared", 0.001, 50.0, 1)
                got += row["granted"]
            return got

        totals = await asyncio.gather(*(drain(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert sum(totals) == 50


async def test_slots_are_shared_fenced_and_come_back_when_their_lease_ends(rt: Runtime) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    q = _Q
    assert await rt.conn.fetchval(TAKE_SLOTS, "s", 3, 2, a, 60.0) == [1, 2]
    assert await rt.conn.fetchval(TAKE_SLOTS, "s", 3, 2, b, 0.2) == [3]
    assert await rt.conn.fetchval(TAKE_SLOTS, "s", 3, 1, b, 60.0) == []
    assert await rt.conn.fetchval(q["give_slots"], "s", [1, 2], b) == 0  # not b's
    assert await rt.conn.fetchval(q["give_slots"], "s", [1], a) == 1
    assert await rt.conn.fetchval(TAKE_SLOTS, "s", 3, 5, b, 60.0) == [1]
    await asyncio.sleep(0.3)  # b's first lease (slot 3) ran out: as if b had died
    assert await rt.conn.fetchval(TAKE_SLOTS, "s", 3, 5, a, 60.0) == [3]
    assert await rt.conn.fetchval("SELECT orchestrator.slots_held('s')") == 3


async def test_grouped_reads_take_one_message_per_group_in_send_order(rt: Runtime) -> None:
    await rt.apply(
        "pipeline: g\nsteps:\n  a: {handler: t:a, group_by: customer.id, next: [b]}\n"
        "  b: {handler: t:b, group_by: n}\n"
    )
    queue = "g__a"
    for n, customer in enumerate(["x", "y", "x", "z", "y", "x"]):
        await start("g", {"n": n, "customer": {"id": customer}}, conn=rt.conn)
    rows = await rt.rows(queue)
    assert [r["headers"]["x-pgmq-group"] for r in rows] == ["x", "y", "x", "z", "y", "x"]

    async def read(qty: int = 10) -> list[int]:
        found = await rt.conn.fetch(_Q["read_grouped"], queue, 30, qty)
        return sorted(orjson.loads(r["message"])["n"] for r in found)

    assert await read() == [0, 1, 3]  # the head of each group
    assert await read() == []  # x, y and z are in flight: their next messages wait
    ids = {r["message"]["n"]: r["msg_id"] for r in rows}
    later = f"UPDATE pgmq.q_{queue} SET vt = now() + interval '1h' WHERE msg_id = $1"
    await rt.conn.execute(later, ids[0])  # x's head waits for a retry: it holds its group
    await rt.conn.execute(f"DELETE FROM pgmq.q_{queue} WHERE msg_id = ANY ($1)", [ids[1], ids[3]])
    assert await read() == [4]
    await rt.conn.execute(f"DELETE FROM pgmq.q_{queue} WHERE msg_id = $1", ids[0])
    assert await read() == [2]


async def test_the_hand_off_sets_the_group_of_the_next_step_and_drops_the_parents(
    rt: Runtime,
) -> None:
    await rt.apply(
        "pipeline: h\nsteps:\n  a: {handler: t:a, group_by: c, next: [b, c]}\n"
        "  b: {handler: t:b, group_by: order.id}\n  c: {handler: t:c}\n"
    )
    await start("h", {"c": "x", "order": {"id": 7}}, conn=rt.conn)

    async def gone() -> bool:
        return await rt.count("h__a") == 0

    await rt.drain(rt.consumer("h", "a", noop), until=gone)
    [b] = await rt.rows("h__b")
    [c] = await rt.rows("h__c")
    assert b["headers"]["x-pgmq-group"] == "7"
    assert "x-pgmq-group" not in c["headers"]


async def test_pause_and_resume_a_step_or_a_pipeline(rt: Runtime) -> None:
    await rt.apply(PIPE)
    since = _Q["paused_since"]
    assert await pause("orders.ship", conn=rt.conn) is True
    assert await pause("orders", "ship", conn=rt.conn) is False
    assert await rt.conn.fetchval(since, "orders", "ship") is not None
    assert await rt.conn.fetchval(since, "orders", "bill") is None
    assert await pause("orders", conn=rt.conn) is True
    assert await rt.conn.fetchval(since, "orders", "bill") is not None
    assert await resume("orders", conn=rt.conn) is True
    assert await resume("orders.ship", conn=rt.conn) is True
    assert await resume("orders.ship", conn=rt.conn) is False
    assert await rt.conn.fetchval(since, "orders", "ship") is None
    with pytest.raises(NotFound, match="has no step 'nope'"):
        await pause("orders.nope", conn=rt.conn)
    with pytest.raises(NotFound, match="not applied"):
        await pause("missing", conn=rt.conn)
    with pytest.raises(NotFound):
        await pause("orders; drop table x", conn=rt.conn)


async def test_cancel_removes_waiting_messages_and_a_later_hand_off_sends_nothing(
    rt: Runtime,
) -> None:
    await rt.apply(PIPE)
    keep = await start("orders", {"n": 1}, conn=rt.conn)
    doomed = await start("orders", {"n": 2}, conn=rt.conn)
    outcome = await cancel(doomed, conn=rt.conn, by="ops")
    assert (outcome.state, outcome.pipeline, outcome.removed) == ("cancelled", "orders", 1)
    assert [r["headers"]["run_id"] for r in await rt.rows("orders__intake")] == [str(keep)]
    row = await rt.conn.fetchrow("SELECT * FROM orchestrator.cancelled_runs")
    assert (row["run_id"], row["cancelled_by"]) == (doomed, "ops")
    assert (await cancel(doomed, conn=rt.conn)).state == "already cancelled"
    assert (await cancel(uuid.uuid4(), conn=rt.conn)).state == "unknown"
    with pytest.raises(QueueError, match="not a run id"):
        await cancel("42", conn=rt.conn)


async def test_a_cancel_waits_for_the_batch_of_its_run_then_removes_what_it_sent(
    rt: Runtime,
) -> None:
    await rt.apply(PIPE)
    run = await start("orders", {"n": 1}, conn=rt.conn)
    pending: list[asyncio.Task[Any]] = []

    async def intake(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        # from elsewhere, while the handler runs: it waits for this batch (a cancel awaited
        # here would wait for its own batch)
        pending.append(asyncio.create_task(cancel(ctx.run_id, conn=rt.aside)))
        await asyncio.sleep(0.2)
        assert not pending[0].done()
        return payload

    async def finished() -> bool:
        return await rt.count("orders__intake") == 0

    await rt.drain(rt.consumer("orders", "intake", intake), until=finished)
    outcome = await pending[0]
    assert (outcome.state, outcome.removed, outcome.in_flight) == ("cancelled", 2, 0)
    assert await rt.count("orders__ship") == await rt.count("orders__bill") == 0
    assert await rt.count("orders__intake", archive=True) == 1
    assert (await cancel(run, conn=rt.conn)).state == "already cancelled"


async def test_a_failed_attempt_of_a_cancelled_run_is_not_retried(rt: Runtime) -> None:
    await rt.apply(PIPE)
    await start("orders", {"n": 1}, conn=rt.conn)
    pending: list[asyncio.Task[Any]] = []

    async def intake(payload: dict[str, Any], ctx: Any) -> None:
        pending.append(asyncio.create_task(cancel(ctx.run_id, conn=rt.aside)))
        await asyncio.sleep(0.2)
        raise RuntimeError("SAP said no")

    async def gone() -> bool:
        return await rt.count("orders__intake") == 0

    await rt.drain(rt.consumer("orders", "intake", intake), until=gone)
    assert (await pending[0]).state == "cancelled"
    assert await rt.count("orders_dlq") == 0


async def test_keyed_starts_return_the_run_that_holds_the_key(rt: Runtime) -> None:
    await rt.apply(PIPE)
    first = await start("orders", {"n": 1}, conn=rt.conn, key="order-42")
    again = await start("orders", {"n": 2}, conn=rt.conn, key="order-42")
    other = await start("orders", {"n": 3}, conn=rt.conn, key="order-43")
    assert again == first != other
    assert await rt.count("orders__intake") == 2
    same_call = await start_keyed("orders", [{}, {}, {}], ["k", "k", None], conn=rt.conn)
    assert [s.duplicate for s in same_call] == [False, True, False]
    assert same_call[0].run_id == same_call[1].run_id
    await rt.conn.execute("DELETE FROM pgmq.q_orders__intake")  # every run finished
    fresh = await start("orders", {"n": 4}, conn=rt.conn, key="order-42")
    assert fresh != first
    with pytest.raises(QueueError, match="run key"):
        await start("orders", {}, conn=rt.conn, key="")


async def test_a_dedupe_window_holds_the_key_after_the_run_finished(rt: Runtime) -> None:
    await rt.apply(PIPE.replace("pipeline: orders", "pipeline: orders\ndedupe_window: 1h"))
    first = await start("orders", {"n": 1}, conn=rt.conn, key="k")
    await rt.conn.execute(
        "SELECT pgmq.archive('orders__intake', msg_id) FROM pgmq.q_orders__intake"
    )
    assert await start("orders", {"n": 2}, conn=rt.conn, key="k") == first
    await rt.conn.execute("UPDATE pgmq.a_orders__intake SET archived_at = now() - interval '2h'")
    await rt.conn.execute("UPDATE orchestrator.runs SET started_at = now() - interval '2h'")
    assert await start("orders", {"n": 3}, conn=rt.conn, key="k") != first


async def test_racing_keyed_starts_in_two_transactions_make_one_run(rt: Runtime) -> None:
    await rt.apply(PIPE)
    other = await connect(rt.dsn)
    try:
        tx = rt.conn.transaction()
        await tx.start()
        mine = await start("orders", {"n": 1}, conn=rt.conn, key="race")
        theirs = asyncio.create_task(start("orders", {"n": 2}, conn=other, key="race"))
        await asyncio.sleep(0.3)
        assert not theirs.done()  # waits on the unique key
        await tx.commit()
        assert await theirs == mine
    finally:
        await other.close()
    assert await rt.count("orders__intake") == 1


async def admit(rt: Runtime, wanted: int, *, size: int | None, rate: float | None) -> Any:
    return await rt.conn.fetchrow(
        _Q["flow_admit"],
        "orders",
        "ship",
        ["orders__close"],
        [5],
        "orders.ship",
        size,
        wanted,
        HOLDER,
        60.0,
        None if rate is None else "orders.ship",
        rate,
        None if rate is None else max(rate, 1.0),
    )


HOLDER = uuid.uuid4()


async def test_one_statement_admits_a_limited_step_or_says_what_it_waits_for(
    rt: Runtime,
) -> None:
    await rt.apply(PIPE)
    first = await admit(rt, 3, size=2, rate=1.0)  # a fresh bucket holds one token
    assert (first["granted"], first["slots"], first["short_of"]) == (1, [1], None)
    assert await rt.conn.fetchval("SELECT orchestrator.slots_held('orders.ship')") == 1
    no_token = await admit(rt, 3, size=2, rate=1.0)
    assert (no_token["granted"], no_token["slots"], no_token["short_of"]) == (0, [], "token")
    assert 0 < no_token["wait"] <= 1.0
    assert await rt.conn.fetchval("SELECT orchestrator.slots_held('orders.ship')") == 1
    other = await rt.conn.fetchval(TAKE_SLOTS, "orders.ship", 2, 1, uuid.uuid4(), 30.0)
    assert other == [2]
    no_slot = await admit(rt, 1, size=2, rate=None)
    assert (no_slot["granted"], no_slot["short_of"]) == (0, "slot")
    assert 29 < no_slot["wait"] <= 30  # the first lease to end is the other holder's
    await rt.conn.execute(
        "SELECT pgmq.send_batch('orders__close', ARRAY(SELECT '{}'::jsonb"
        " FROM generate_series(1, 6)))"
    )
    full = await admit(rt, 1, size=None, rate=None)
    assert (full["full_queue"], full["granted"]) == ("orders__close", 0)
    await pause("orders.ship", conn=rt.conn)
    paused = await admit(rt, 1, size=None, rate=None)
    assert paused["paused"] and paused["granted"] == 0 and paused["full_queue"] is None
