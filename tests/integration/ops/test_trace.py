"""`trace_run`: a run's messages across step queues, archives, the dead-letter queue, joins."""

from __future__ import annotations

import asyncpg
import pytest

from orchestrator.errors import NotFound, OrchestratorError
from orchestrator.ops.dlq import Filter, replay_dead_letters
from orchestrator.ops.trace import parse_run_id, trace_run
from orchestrator.spec import Pipeline
from tests.integration.ops import support


async def test_finished_run(conn: asyncpg.Connection, orders: Pipeline) -> None:
    run = support.new_run()
    ids = await support.complete_run(conn, orders, run)
    await support.complete_run(conn, orders, support.new_run())  # another run, not shown

    trace = await trace_run(conn, run)

    assert trace.state == "done"
    assert trace.pipelines == ("orders",)
    assert [e.step for e in trace.entries] == ["fetch", "label", "sync", "report"]
    for entry in trace.entries:
        assert entry.state == "done"
        assert entry.msg_id == ids[entry.step]
        assert entry.attempts == 1
        assert entry.sent is not None and entry.started is not None
        assert entry.finished is not None and entry.sent <= entry.started <= entry.finished
    label = trace.entries[1]
    assert (label.parent_id, label.parent_step) == (ids["fetch"], "fetch")


async def test_running_run_shows_where_each_message_is(
    conn: asyncpg.Connection, orders: Pipeline
) -> None:
    run = support.new_run()
    fetch = await support.send(conn, orders, "fetch", run)
    await support.read(conn, orders.queue_name("fetch"))
    await support.archive(conn, orders.queue_name("fetch"), fetch)
    await support.send(conn, orders, "label", run, parent_id=fetch, parent_step="fetch")
    sync = await support.send(conn, orders, "sync", run, parent_id=fetch, parent_step="fetch")
    await support.read(conn, orders.queue_name("sync"))
    await support.fail(conn, orders.queue_name("sync"), sync, attempt=1)
    other = support.new_run()
    await support.send(conn, orders, "fetch", other, delay=300)
    await support.send(conn, orders, "label", other)
    await support.read(conn, orders.queue_name("label"), only={"run": other})

    trace = await trace_run(conn, run)

    states = {e.step: e.state for e in trace.entries}
    assert states == {"fetch": "done", "label": "waiting", "sync": "retrying"}
    assert trace.state == "running"
    sync_entry = next(e for e in trace.entries if e.step == "sync")
    assert [e["attempt"] for e in sync_entry.errors] == [1]
    assert sync_entry.attempts == 1
    later = await trace_run(conn, other)
    assert {e.step: e.state for e in later.entries} == {"fetch": "delayed", "label": "in flight"}


async def test_dead_letter_and_join_waiting(conn: asyncpg.Connection, orders: Pipeline) -> None:
    run = support.new_run()
    fetch = await support.send(conn, orders, "fetch", run)
    await support.read(conn, orders.queue_name("fetch"))
    await support.archive(conn, orders.queue_name("fetch"), fetch)
    dead = await support.dead_letter(
        conn,
        orders,
        "sync",
        run,
        msg_id=7,
        attempts=3,
        earlier=[support.error(1), support.error(2)],
    )
    await conn.execute(
        "INSERT INTO orchestrator.joins (pipeline, step, run_id, arrived, expected)"
        " VALUES ('orders', 'report', $1::uuid, $2, $3)",
        run,
        {"label": {"ok": True}},
        ["label", "sync"],
    )

    trace = await trace_run(conn, run)

    assert trace.state == "failed"
    entry = next(e for e in trace.entries if e.step == "sync")
    assert (entry.state, entry.dead_letter_id, entry.msg_id) == ("dead letter", dead, 7)
    assert entry.attempts == 3
    assert [e.get("attempt") for e in entry.errors] == [1, 2, 3]
    assert entry.errors[-1]["type"] == "TimeoutError"
    assert entry.queue == "orders__sync"
    [join] = trace.joins
    assert (join.step, join.arrived, join.missing) == ("report", ("label",), ("sync",))

    report = await replay_dead_letters(conn, "orders", Filter(ids=(dead,)))
    assert len(report.replayed) == 1
    replayed = await trace_run(conn, run)
    assert replayed.state == "running"
    entry = next(e for e in replayed.entries if e.step == "sync")
    assert (entry.state, entry.replayed_from, entry.attempts) == ("waiting", dead, 0)


async def test_dead_letter_pipeline_of_its_own(conn: asyncpg.Connection, ledger: Pipeline) -> None:
    run = support.new_run()
    await support.dead_letter(conn, ledger, "book", run)
    trace = await trace_run(conn, run.replace("-", "").upper(), ["ledger"])
    assert trace.run_id == run
    assert [(e.pipeline, e.step, e.state) for e in trace.entries] == [
        ("ledger", "book", "dead letter")
    ]


async def test_dead_letter_without_attempt_history(
    conn: asyncpg.Connection, ledger: Pipeline
) -> None:
    run = support.new_run()
    body = {
        "step": "book",
        "run_id": run,
        "attempts": 1,
        "permanent": True,
        "payload": {},
        "error": {"type": "Fail", "message": "no account"},
    }
    await conn.execute(
        "SELECT pgmq.send('ledger_dead', $1::jsonb, $2::jsonb)", body, {"run_id": run}
    )
    [entry] = (await trace_run(conn, run)).entries
    assert [(e["attempt"], e["type"], e["message"]) for e in entry.errors] == [
        (1, "Fail", "no account")
    ]
    assert (entry.queue, entry.sent) == ("ledger__book", None)


async def test_unknown_and_malformed_run_ids(conn: asyncpg.Connection, orders: Pipeline) -> None:
    with pytest.raises(NotFound, match="no run"):
        await trace_run(conn, support.new_run())
    with pytest.raises(OrchestratorError, match="malformed run id 'not-a-run'"):
        await trace_run(conn, "not-a-run")
    with pytest.raises(NotFound, match="unknown pipeline"):
        await trace_run(conn, support.new_run(), ["nope"])


def test_parse_run_id_forms() -> None:
    run = "3f2c8a4e-9d1b-4c7a-8e5f-0a1b2c3d4e5f"
    assert parse_run_id(run.upper()) == run
    assert parse_run_id(run.replace("-", "")) == run
    with pytest.raises(OrchestratorError):
        parse_run_id("3f2c8a4e")


async def test_archive_lookup_uses_the_run_id_index(
    conn: asyncpg.Connection, orders: Pipeline
) -> None:
    """The trace finds a run in a large archive through the (headers->>'run_id') index."""
    queue = orders.queue_name("fetch")
    await conn.execute(
        f"INSERT INTO pgmq.a_{queue} (msg_id, enqueued_at, vt, message, headers)"
        " SELECT i, now(), now(), '{}', jsonb_build_object('run_id', gen_random_uuid()::text)"
        " FROM generate_series(1000, 21000) AS i"
    )
    await conn.execute(f"ANALYZE pgmq.a_{queue}")
    run = support.new_run()
    await support.complete_run(conn, orders, run)
    scans = (
        "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes"
        " WHERE relname = $1 AND indexrelname LIKE '%run_id%'"
    )
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    before = await conn.fetchval(scans, f"a_{queue}")

    trace = await trace_run(conn, run)

    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    assert await conn.fetchval(scans, f"a_{queue}") == before + 1
    assert [e.step for e in trace.entries] == ["fetch", "label", "sync", "report"]
