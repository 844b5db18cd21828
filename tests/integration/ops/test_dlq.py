"""Dead letters: listing with filters, one in full, replay (atomic, repeatable) and purge."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from orchestrator.errors import NotFound, UsageError
from orchestrator.ops.dlq import (
    Filter,
    get_dead_letter,
    list_dead_letters,
    purge_dead_letters,
    replay_dead_letters,
)
from orchestrator.spec import Pipeline
from tests.integration.ops import support


async def _age(conn: asyncpg.Connection, queue: str, dead_id: int, interval: str) -> None:
    await conn.execute(
        f"UPDATE pgmq.q_{queue} SET enqueued_at = enqueued_at - $2::text::interval"
        " WHERE msg_id = $1",
        dead_id,
        interval,
    )


async def _queue_rows(conn: asyncpg.Connection, queue: str) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT * FROM pgmq.q_{queue} ORDER BY msg_id")


async def test_list_filters_and_order(conn: asyncpg.Connection, orders: Pipeline) -> None:
    run = support.new_run()
    a = await support.dead_letter(conn, orders, "sync", run, message="SAP answered 503")
    b = await support.dead_letter(conn, orders, "label", run, error_type="ValueError", message="x")
    c = await support.dead_letter(conn, orders, "sync", run, error_type="KeyError", message="y")
    await _age(conn, orders.dead_letter_queue, a, "2 hours")

    everything = await list_dead_letters(conn, "orders")
    assert [d.id for d in everything] == [c, b, a]  # newest first
    assert [d.id for d in await list_dead_letters(conn, "orders", Filter(step="sync"))] == [c, a]
    by_error = await list_dead_letters(conn, "orders", Filter(error="sap ANSWERED"))
    assert [d.id for d in by_error] == [a]
    by_type = await list_dead_letters(conn, "orders", Filter(error="valueerror"))
    assert [d.id for d in by_type] == [b]
    recent = await list_dead_letters(conn, "orders", Filter(since=3600))
    assert [d.id for d in recent] == [c, b]
    assert [d.id for d in await list_dead_letters(conn, "orders", limit=1)] == [c]

    first = everything[-1]
    assert (first.step, first.run_id, first.attempts, first.msg_id) == ("sync", run, 3, 1)
    assert first.error == "TimeoutError: SAP answered 503"
    assert first.payload == {"order": 1}
    assert first.traceback is not None and "Traceback" in first.traceback


async def test_list_rejects_unknown_pipeline_and_step(
    conn: asyncpg.Connection, orders: Pipeline
) -> None:
    with pytest.raises(NotFound, match="unknown pipeline 'nope'"):
        await list_dead_letters(conn, "nope")
    with pytest.raises(NotFound, match=r"has no step 'synk' \(did you mean 'sync'\?\)"):
        await list_dead_letters(conn, "orders", Filter(step="synk"))
    # A step removed from the pipeline still has its dead letters listed.
    await support.dead_letter(conn, orders, "retired", support.new_run())
    assert len(await list_dead_letters(conn, "orders", Filter(step="retired"))) == 1


async def test_get_one_with_or_without_pipeline(
    conn: asyncpg.Connection, orders: Pipeline, ledger: Pipeline
) -> None:
    run = support.new_run()
    first = await support.dead_letter(conn, orders, "sync", run)
    second = await support.dead_letter(conn, orders, "sync", run)
    assert (await get_dead_letter(conn, second)).pipeline == "orders"
    assert (await get_dead_letter(conn, first, "orders")).id == first
    await support.dead_letter(conn, ledger, "book", run)
    with pytest.raises(UsageError, match="several pipelines"):
        await get_dead_letter(conn, first)
    assert (await get_dead_letter(conn, first, "ledger")).pipeline == "ledger"
    with pytest.raises(NotFound, match="no dead letter 99 in pipeline 'orders'"):
        await get_dead_letter(conn, 99, "orders")
    with pytest.raises(NotFound, match="no dead letter 99 in any pipeline"):
        await get_dead_letter(conn, 99)


async def test_replay_sends_payload_and_headers_back_once(
    conn: asyncpg.Connection, orders: Pipeline
) -> None:
    run = support.new_run()
    dead = await support.dead_letter(conn, orders, "sync", run, {"order": 42}, attempts=3)
    other = await support.dead_letter(conn, orders, "label", run)

    report = await replay_dead_letters(conn, "orders", Filter(ids=(dead,)))

    assert [(r.dead_letter_id, r.step, r.outcome) for r in report.replayed] == [
        (dead, "sync", "replayed")
    ]
    rows = await _queue_rows(conn, orders.queue_name("sync"))
    assert len(rows) == 1
    message = rows[0]
    assert message["message"] == {"order": 42}
    assert message["read_ct"] == 0  # attempts start again
    assert "errors" not in message["headers"]
    assert message["headers"]["run_id"] == run
    assert message["headers"]["step"] == "sync"
    assert message["headers"]["replayed_from"] == dead
    assert message["headers"]["traceparent"].startswith("00-")
    remaining = await list_dead_letters(conn, "orders")
    assert [d.id for d in remaining] == [other]

    again = await replay_dead_letters(conn, "orders", Filter(ids=(dead,)))
    assert again.replayed == [] and again.missing_ids == [dead]
    assert len(await _queue_rows(conn, orders.queue_name("sync"))) == 1


async def test_replay_by_step_error_and_all(conn: asyncpg.Connection, orders: Pipeline) -> None:
    run = support.new_run()
    for _ in range(3):
        await support.dead_letter(conn, orders, "sync", run)
    await support.dead_letter(conn, orders, "label", run, error_type="ValueError")
    await support.dead_letter(conn, orders, "label", run, error_type="KeyError")

    by_step = await replay_dead_letters(conn, "orders", Filter(step="sync"), batch=2)
    assert len(by_step.replayed) == 3
    by_error = await replay_dead_letters(conn, "orders", Filter(error="keyerror"))
    assert len(by_error.replayed) == 1
    rest = await replay_dead_letters(conn, "orders", everything=True)
    assert rest.by_step() == {"label": 1}
    assert len(await _queue_rows(conn, orders.queue_name("sync"))) == 3
    assert len(await _queue_rows(conn, orders.queue_name("label"))) == 2
    assert await list_dead_letters(conn, "orders") == []


async def test_replay_needs_a_selection(conn: asyncpg.Connection, orders: Pipeline) -> None:
    with pytest.raises(UsageError, match="--all"):
        await replay_dead_letters(conn, "orders")


async def test_dead_letters_of_removed_steps_stay(
    conn: asyncpg.Connection, orders: Pipeline
) -> None:
    run = support.new_run()
    gone = [await support.dead_letter(conn, orders, "retired", run) for _ in range(3)]
    kept = await support.dead_letter(conn, orders, "sync", run)
    totals: list[int] = []

    report = await replay_dead_letters(
        conn, "orders", everything=True, batch=2, on_total=totals.append
    )

    assert totals == [4]
    assert [r.dead_letter_id for r in report.replayed] == [kept]
    assert [(r.dead_letter_id, r.outcome) for r in report.left] == [
        (i, "unknown step") for i in gone
    ]
    assert sorted(d.id for d in await list_dead_letters(conn, "orders")) == gone


async def test_replay_is_one_transaction(conn: asyncpg.Connection, orders: Pipeline) -> None:
    """When enqueueing fails, the dead letters of that batch stay where they were."""
    queue = orders.queue_name("sync")
    await conn.execute(
        """
        CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.message ? 'poison' THEN RAISE EXCEPTION 'refused'; END IF;
            RETURN NEW;
        END $$;
        """
    )
    await conn.execute(
        f"CREATE TRIGGER poison BEFORE INSERT ON pgmq.q_{queue}"
        " FOR EACH ROW EXECUTE FUNCTION poison()"
    )
    run = support.new_run()
    good = await support.dead_letter(conn, orders, "sync", run, {"order": 1})
    bad = await support.dead_letter(conn, orders, "sync", run, {"poison": True})

    with pytest.raises(asyncpg.RaiseError, match="refused"):
        await replay_dead_letters(conn, "orders", Filter(step="sync"))

    assert await _queue_rows(conn, queue) == []
    assert sorted(d.id for d in await list_dead_letters(conn, "orders")) == [good, bad]


async def test_concurrent_replays_send_each_dead_letter_once(
    pool: asyncpg.Pool, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    run = support.new_run()
    count = 40
    for n in range(count):
        await support.dead_letter(conn, orders, "sync", run, {"n": n})

    async def replay() -> int:
        async with pool.acquire() as c:
            report = await replay_dead_letters(c, "orders", everything=True, batch=3)
            return len(report.replayed)

    done = await asyncio.gather(replay(), replay(), replay())

    assert sum(done) == count
    rows = await _queue_rows(conn, orders.queue_name("sync"))
    assert sorted(r["message"]["n"] for r in rows) == list(range(count))


async def test_purge_by_age_step_and_all(conn: asyncpg.Connection, orders: Pipeline) -> None:
    run = support.new_run()
    old = await support.dead_letter(conn, orders, "sync", run)
    await _age(conn, orders.dead_letter_queue, old, "8 days")
    label = await support.dead_letter(conn, orders, "label", run)
    sync = await support.dead_letter(conn, orders, "sync", run)
    batches: list[int] = []

    assert await purge_dead_letters(conn, "orders", Filter(before=7 * 86400)) == 1
    assert await purge_dead_letters(conn, "orders", Filter(step="label")) == 1
    assert [d.id for d in await list_dead_letters(conn, "orders")] == [sync]
    assert label != sync
    assert await purge_dead_letters(conn, "orders", batch=1, on_batch=batches.append) == 1
    assert batches == [1]
    assert await list_dead_letters(conn, "orders") == []
    assert await purge_dead_letters(conn, "orders") == 0
