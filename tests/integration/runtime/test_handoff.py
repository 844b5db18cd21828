"""The hand-off: next messages, archive, headers, and handler writes in one transaction."""

from __future__ import annotations

import contextlib
import re
import uuid
from typing import Any

from orchestrator.runtime import StepContext, start
from tests.integration.runtime.conftest import Runtime

CHAIN = """
pipeline: chain
defaults: {visibility_timeout: 30s, timeout: 10s, retry: {jitter: false, initial: 10s}}
steps:
  first: {handler: t:first, next: second}
  second: {handler: t:second, next: third}
  third: {handler: t:third}
"""


async def test_chain_hands_off_with_contract_headers(rt: Runtime) -> None:
    await rt.apply(CHAIN)
    run_id = await start("chain", {"n": 1}, conn=rt.conn, headers={"tenant": "acme"})

    async def first(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return {"n": payload["n"] + 1}

    consumer = rt.consumer("chain", "first", first)
    await rt.drain(consumer, until=lambda: _has(rt, "chain__second"))

    [msg] = await rt.rows("chain__second")
    [parent] = await rt.rows("chain__first", archive=True)
    assert await rt.count("chain__first") == 0
    assert msg["message"] == {"n": 2}
    headers = msg["headers"]
    assert headers["run_id"] == str(run_id)
    assert headers["pipeline"] == "chain"
    assert headers["step"] == "second"
    assert headers["parent_id"] == parent["msg_id"]
    assert headers["parent_step"] == "first"
    assert headers["tenant"] == "acme"  # the caller's keys travel with the run
    trace = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", headers["traceparent"])
    assert trace is not None and trace[1] == uuid.UUID(str(run_id)).hex
    assert trace[2] != "0" * 16
    assert headers["traceparent"] != parent["headers"]["traceparent"]
    assert "errors" not in headers and "sent_at" in headers
    assert parent["read_ct"] == 1 and parent["message"] == {"n": 1}


async def test_none_forwards_the_input(rt: Runtime) -> None:
    await rt.apply(CHAIN)
    await start("chain", {"keep": ["me", 1]}, conn=rt.conn)

    async def first(payload: dict[str, Any], ctx: StepContext) -> None:
        return None

    await rt.drain(rt.consumer("chain", "first", first), until=lambda: _has(rt, "chain__second"))
    [msg] = await rt.rows("chain__second")
    assert msg["message"] == {"keep": ["me", 1]}


async def test_terminal_step_deletes_when_archive_is_off(rt: Runtime) -> None:
    await rt.apply(
        """
pipeline: noarchive
queues: {archive: false}
steps:
  only: {handler: t:only}
"""
    )
    await start("noarchive", {}, conn=rt.conn)
    seen: list[int] = []

    async def only(payload: dict[str, Any], ctx: StepContext) -> None:
        seen.append(ctx.message_id)

    await rt.drain(
        rt.consumer("noarchive", "only", only), until=lambda: _empty(rt, "noarchive__only")
    )
    assert len(seen) == 1
    assert await rt.count("noarchive__only", archive=True) == 0


async def test_handler_writes_commit_with_the_hand_off(rt: Runtime) -> None:
    await rt.apply(CHAIN)
    run_id = await start("chain", {"n": 1}, conn=rt.conn)

    async def first(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        await ctx.conn.execute(
            "INSERT INTO side_effects VALUES ($1, $2, 'first')", ctx.message_id, ctx.run_id
        )
        return payload

    await rt.drain(rt.consumer("chain", "first", first), until=lambda: _has(rt, "chain__second"))
    effects = await rt.conn.fetch("SELECT * FROM side_effects")
    assert [(r["run_id"], r["note"]) for r in effects] == [(run_id, "first")]
    assert await rt.count("chain__second") == 1


async def test_handler_writes_roll_back_with_a_failure(rt: Runtime) -> None:
    await rt.apply(CHAIN)
    await start("chain", {"n": 1}, conn=rt.conn)
    calls = 0

    async def first(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await ctx.conn.execute("INSERT INTO side_effects VALUES ($1, $2, 'x')", 1, ctx.run_id)
        raise RuntimeError("boom")

    await rt.drain(rt.consumer("chain", "first", first), until=lambda: _retried(rt, "chain__first"))
    assert calls == 1
    assert await rt.conn.fetchval("SELECT count(*) FROM side_effects") == 0
    assert await rt.count("chain__second") == 0
    [msg] = await rt.rows("chain__first")
    assert msg["headers"]["errors"][0]["type"] == "RuntimeError"


async def test_fan_out_sends_to_every_successor(rt: Runtime) -> None:
    await rt.apply(
        """
pipeline: fan
steps:
  start: {handler: t:s, next: [left, right]}
  left: {handler: t:l}
  right: {handler: t:r}
"""
    )
    await start("fan", {"x": 1}, conn=rt.conn)

    async def s(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return {"y": 2}

    async def both() -> bool:
        return await rt.count("fan__left") == 1 and await rt.count("fan__right") == 1

    await rt.drain(rt.consumer("fan", "start", s), until=both)
    [left] = await rt.rows("fan__left")
    [right] = await rt.rows("fan__right")
    assert left["message"] == right["message"] == {"y": 2}
    assert left["headers"]["step"] == "left" and right["headers"]["step"] == "right"
    assert left["headers"]["parent_id"] == right["headers"]["parent_id"]


async def test_successor_delay_applies(rt: Runtime) -> None:
    await rt.apply(
        """
pipeline: later
steps:
  a: {handler: t:a, next: b}
  b: {handler: t:b, delay: 1h}
"""
    )
    await start("later", {}, conn=rt.conn)
    await rt.drain(rt.consumer("later", "a", _noop), until=lambda: _has(rt, "later__b"))
    [msg] = await rt.rows("later__b")
    wait = await rt.seconds_until_visible("later__b", msg["msg_id"])
    assert 3590 < wait <= 3600


async def test_batch_where_one_fails_hands_off_the_others(rt: Runtime) -> None:
    await rt.apply(
        CHAIN.replace("first: {handler: t:first", "first: {batch_size: 10, handler: t:first")
    )
    await rt.conn.execute(
        "SELECT orchestrator.start_runs('chain', ARRAY(SELECT jsonb_build_object('i', i)"
        " FROM generate_series(1, 10) i))"
    )
    batches: set[int] = set()

    async def first(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        batches.add(id(ctx.conn))
        await ctx.conn.execute(
            "INSERT INTO side_effects VALUES ($1, $2, $3)",
            ctx.message_id,
            ctx.run_id,
            str(payload["i"]),
        )
        if payload["i"] == 4:
            raise ValueError("four")
        return payload

    await rt.drain(rt.consumer("chain", "first", first), until=lambda: _has(rt, "chain__second", 9))
    notes = sorted(int(r["note"]) for r in await rt.conn.fetch("SELECT note FROM side_effects"))
    assert notes == [1, 2, 3, 5, 6, 7, 8, 9, 10]
    [left] = await rt.rows("chain__first")
    assert left["message"] == {"i": 4} and left["headers"]["errors"][0]["message"] == "four"
    assert await rt.count("chain__first", archive=True) == 9
    assert sorted(r["message"]["i"] for r in await rt.rows("chain__second")) == notes


async def test_handler_that_swallows_a_database_error_fails_alone(rt: Runtime) -> None:
    await rt.apply(
        CHAIN.replace("first: {handler: t:first", "first: {batch_size: 5, handler: t:first")
    )
    await rt.conn.execute(
        "SELECT orchestrator.start_runs('chain', ARRAY(SELECT jsonb_build_object('i', i)"
        " FROM generate_series(1, 5) i))"
    )

    async def first(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        await ctx.conn.execute("INSERT INTO side_effects VALUES (1, $1, 'ok')", ctx.run_id)
        if payload["i"] in (2, 5):
            with contextlib.suppress(Exception):  # swallowed: the transaction stays aborted
                await ctx.conn.execute("SELECT 1/0")
        return payload

    await rt.drain(rt.consumer("chain", "first", first), until=lambda: _has(rt, "chain__second", 3))
    assert await rt.conn.fetchval("SELECT count(*) FROM side_effects") == 3
    left = await rt.rows("chain__first")
    assert sorted(r["message"]["i"] for r in left) == [2, 5]
    assert {r["headers"]["errors"][0]["type"] for r in left} == {"TransactionAborted"}


async def test_single_message_that_swallows_a_database_error(rt: Runtime) -> None:
    await rt.apply(CHAIN)
    await start("chain", {}, conn=rt.conn)

    async def first(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        await ctx.conn.execute("INSERT INTO side_effects VALUES (1, $1, 'ok')", ctx.run_id)
        with contextlib.suppress(Exception):
            await ctx.conn.execute("SELECT 1/0")
        return payload

    await rt.drain(rt.consumer("chain", "first", first), until=lambda: _retried(rt, "chain__first"))
    assert await rt.conn.fetchval("SELECT count(*) FROM side_effects") == 0
    assert await rt.count("chain__second") == 0


async def _noop(payload: dict[str, Any], ctx: StepContext) -> None:
    return None


async def _has(rt: Runtime, queue: str, n: int = 1) -> bool:
    return await rt.count(queue) >= n


async def _empty(rt: Runtime, queue: str) -> bool:
    return await rt.count(queue) == 0


async def _retried(rt: Runtime, queue: str) -> bool:
    """True once a message of `queue` carries a failed attempt."""
    value = await rt.conn.fetchval(f"SELECT count(*) FROM pgmq.q_{queue} WHERE headers ? 'errors'")
    return bool(value)


async def test_batch_handlers_get_savepoints_only_when_they_use_the_database(rt: Runtime) -> None:
    await rt.apply(
        CHAIN.replace("first: {handler: t:first", "first: {batch_size: 6, handler: t:first")
    )
    await rt.conn.execute(
        "SELECT orchestrator.start_runs('chain', ARRAY(SELECT jsonb_build_object('i', i)"
        " FROM generate_series(1, 6) i))"
    )
    import asyncpg

    async def first(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        i = payload["i"]
        assert isinstance(ctx.conn, asyncpg.Connection)
        if i == 1:  # nested transaction: a savepoint inside the handler's
            async with ctx.conn.transaction():
                await ctx.conn.execute(
                    "INSERT INTO side_effects VALUES ($1, $2, 'tx')", i, ctx.run_id
                )
        elif i == 2:  # a cursor
            async with ctx.conn.transaction():
                rows = [r async for r in ctx.conn.cursor("SELECT generate_series(1, 3) AS n")]
            await ctx.conn.execute(
                "INSERT INTO side_effects VALUES ($1, $2, $3)", i, ctx.run_id, str(len(rows))
            )
        elif i == 3:  # a prepared statement, then a failure: its write is undone
            statement = await ctx.conn.prepare("INSERT INTO side_effects VALUES ($1, $2, 'gone')")
            await statement.fetch(i, ctx.run_id)
            raise RuntimeError("three")
        elif i == 4:  # no database at all, then a failure: nothing to undo
            raise RuntimeError("four")
        elif i == 5:
            await ctx.conn.execute(
                "INSERT INTO side_effects VALUES ($1, $2, 'plain')", i, ctx.run_id
            )
        return payload

    await rt.drain(rt.consumer("chain", "first", first), until=lambda: _has(rt, "chain__second", 4))
    notes = await rt.conn.fetch("SELECT msg_id, note FROM side_effects ORDER BY msg_id")
    assert [(r["msg_id"], r["note"]) for r in notes] == [(1, "tx"), (2, "3"), (5, "plain")]
    assert sorted(r["message"]["i"] for r in await rt.rows("chain__second")) == [1, 2, 5, 6]
    assert sorted(r["message"]["i"] for r in await rt.rows("chain__first")) == [3, 4]


async def test_consecutive_batches_commit_separately(rt: Runtime) -> None:
    await rt.apply(CHAIN)
    await rt.conn.execute(
        "SELECT orchestrator.start_runs('chain', ARRAY(SELECT jsonb_build_object('i', i)"
        " FROM generate_series(1, 5) i))"
    )

    async def first(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        async with ctx.conn.transaction():  # a savepoint inside the batch's transaction
            await ctx.conn.execute(
                "INSERT INTO side_effects VALUES ($1, $2, txid_current()::text)",
                payload["i"],
                ctx.run_id,
            )
        return payload

    await rt.drain(rt.consumer("chain", "first", first), until=lambda: _has(rt, "chain__second", 5))
    rows = await rt.conn.fetch("SELECT msg_id, note FROM side_effects ORDER BY msg_id")
    assert [r["msg_id"] for r in rows] == [1, 2, 3, 4, 5]
    assert len({r["note"] for r in rows}) == 5  # one transaction per batch


async def test_a_refused_commit_is_a_failed_attempt(rt: Runtime) -> None:
    await rt.apply(CHAIN.replace("retry: {jitter: false", "retry: {max_attempts: 1, jitter: false"))
    await rt.conn.execute(
        "CREATE TABLE once (k text, CONSTRAINT once_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)"
    )
    await rt.conn.execute("INSERT INTO once VALUES ('taken')")
    await rt.conn.execute(
        'SELECT orchestrator.start_runs(\'chain\', ARRAY[\'{"k": "free"}\', \'{"k": "taken"}\','
        ' \'{"k": "also free"}\']::jsonb[])'
    )

    async def first(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        await ctx.conn.execute("INSERT INTO once VALUES ($1)", payload["k"])  # checked at COMMIT
        return payload

    async def settled() -> bool:
        return await rt.count("chain__second") == 2 and await rt.count("chain_dlq") == 1

    await rt.drain(rt.consumer("chain", "first", first), until=settled)
    [dead] = await rt.rows("chain_dlq")
    assert dead["message"]["payload"] == {"k": "taken"}
    assert dead["message"]["error"]["type"] == "CommitFailed"
    assert "once_k" in dead["message"]["error"]["message"]
    assert sorted(r["k"] for r in await rt.conn.fetch("SELECT k FROM once")) == [
        "also free",
        "free",
        "taken",
    ]
