"""One bad message never stops its batch: undecodable bodies, outputs that cannot be stored,
invalid retry delays, numbers that must keep every digit, suspects run alone and the cap on
reads, a hung plain ``def`` handler, and databases whose default isolation is not READ
COMMITTED."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from decimal import Decimal
from typing import Any

import pytest

from orchestrator.db import create_pool
from orchestrator.errors import TooManyAbandoned
from orchestrator.ops.dlq import replay_dead_letters
from orchestrator.runtime import Fail, Retry, StepContext
from tests.integration.runtime.conftest import Runtime

PIPE = """
pipeline: pz
dead_letter: pz_dead
defaults:
  visibility_timeout: 30s
  timeout: 5s
  batch_size: 4
  retry: {max_attempts: 3, backoff: constant, initial: 100ms, max: 1s, jitter: false}
steps:
  work: {handler: t:work, next: after}
  after: {handler: t:after}
"""

DEEP = '{"deep": ' + "[" * 1025 + "]" * 1025 + "}"
HUGE = '{"n": 1' + "0" * 5000 + "}"
DIGITS = '{"id": 123456789012345678901, "amount": 1234567890.123456789, "small": 0.1}'


async def _send_text(rt: Runtime, queue: str, text: str) -> int:
    msg_id: int = await rt.conn.fetchval(
        "SELECT * FROM pgmq.send($1, $2::text::jsonb)", queue, text
    )
    return msg_id


async def _texts(rt: Runtime, sql: str, *args: Any) -> list[str]:
    return [r[0] for r in await rt.conn.fetch(sql, *args)]


async def _dead_letters(rt: Runtime) -> list[dict[str, Any]]:
    rows = await rt.conn.fetch("SELECT message FROM pgmq.q_pz_dead ORDER BY msg_id")
    return [r["message"] for r in rows]


async def _settled(rt: Runtime, handed: int, dead: int) -> bool:
    return (
        await rt.count("pz__after") >= handed
        and await rt.count("pz_dead") >= dead
        and await rt.count("pz__work") == 0
    )


async def forward(payload: dict[str, Any], ctx: StepContext) -> None:
    return None


async def test_undecodable_bodies_fail_alone_and_keep_their_text(rt: Runtime) -> None:
    await rt.apply(PIPE)
    good = [json.dumps({"n": n}) for n in range(6)]
    bodies = [good[0], DEEP, good[1], good[2], HUGE, good[3], '{"big": 1e400}', good[4], good[5]]
    for text in bodies:
        await _send_text(rt, "pz__work", text)
    raw = await _texts(rt, "SELECT message::text FROM pgmq.q_pz__work ORDER BY msg_id")

    await rt.drain(rt.consumer("pz", "work", forward), until=lambda: _settled(rt, 7, 2))

    letters = await _dead_letters(rt)
    assert [d["error"]["type"] for d in letters] == ["UndecodableMessage"] * 2
    assert all(d["permanent"] and d["attempts"] == 1 for d in letters)
    assert [d["payload"] for d in letters] == [raw[1], raw[4]]  # the text, as stored
    assert "nested too deeply" in letters[0]["error"]["message"]
    after = await _texts(rt, "SELECT message::text FROM pgmq.q_pz__after ORDER BY msg_id")
    assert len(after) == 7  # every batch-mate handed off once, 1e400 with all its digits
    assert ("1" + "0" * 400) in next(t for t in after if "big" in t)
    assert await rt.count("pz__work") == 0


async def test_numbers_keep_every_digit_through_handoff_retry_dead_letter_and_replay(
    rt: Runtime,
) -> None:
    await rt.apply(PIPE)
    await _send_text(rt, "pz__work", DIGITS)  # handed off after one retry
    seen: list[dict[str, Any]] = []

    async def work(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        seen.append(payload)
        if ctx.attempt == 1:
            raise Retry(after=0)
        return {**payload, "double": payload["id"] * 2}

    await rt.drain(rt.consumer("pz", "work", work), until=lambda: _settled(rt, 1, 0))
    assert seen[0] == {
        "id": 123456789012345678901,
        "amount": Decimal("1234567890.123456789"),
        "small": 0.1,
    }
    assert seen[1] == seen[0] and isinstance(seen[0]["small"], float)
    [text] = await _texts(rt, "SELECT message::text FROM pgmq.q_pz__after")
    assert '"id": 123456789012345678901' in text and "1234567890.123456789" in text
    assert '"double": 246913578024691357802' in text

    async def after(payload: dict[str, Any], ctx: StepContext) -> None:
        raise Fail("dead on purpose")

    await rt.drain(
        rt.consumer("pz", "after", after),
        until=lambda: _count_is(rt, "pz_dead", 1),
    )
    [letter] = await _texts(rt, "SELECT message->>'payload' FROM pgmq.q_pz_dead")
    assert "123456789012345678901" in letter and "1234567890.123456789" in letter
    report = await replay_dead_letters(rt.conn, "pz", everything=True)
    assert len(report.replayed) == 1
    [again] = await _texts(rt, "SELECT message::text FROM pgmq.q_pz__after")
    assert "123456789012345678901" in again and "1234567890.123456789" in again


async def _count_is(rt: Runtime, queue: str, n: int) -> bool:
    return await rt.count(queue) == n


@pytest.mark.parametrize(
    ("bad", "kind"),
    [
        ("retry_far", "InvalidRetryDelay"),
        ("retry_inf", "InvalidRetryDelay"),
        ("too_big", "InvalidOutput"),
        ("not_json", "InvalidOutput"),
    ],
)
async def test_a_bad_outcome_fails_its_message_alone(rt: Runtime, bad: str, kind: str) -> None:
    await rt.apply(PIPE)
    for n in range(4):
        await _send_text(rt, "pz__work", json.dumps({"n": n, "bad": n == 2}))

    async def work(payload: dict[str, Any], ctx: StepContext) -> Any:
        if not payload["bad"]:
            return {"ok": payload["n"]}
        if bad == "retry_far":
            raise Retry(after=1e13)
        if bad == "retry_inf":
            raise Retry(after=float("inf"))
        if bad == "too_big":
            return {"blob": "x" * (1 << 20)}
        return {"set": {1, 2}}

    await rt.drain(rt.consumer("pz", "work", work), until=lambda: _settled(rt, 3, 1))
    [letter] = await _dead_letters(rt)
    assert letter["error"]["type"] == kind and letter["payload"] == {"n": 2, "bad": True}
    assert sorted(r["message"]["ok"] for r in await rt.rows("pz__after")) == [0, 1, 3]


async def test_suspects_run_alone_and_the_cap_holds_before_the_handler(rt: Runtime) -> None:
    await rt.apply(PIPE)
    ids = [await _send_text(rt, "pz__work", json.dumps({"n": n})) for n in range(4)]
    # As a worker that died would leave them: message 1 lost at its first read (a suspect);
    # message 2 read 3 times (max_attempts), its last two reads run alone and lost (proven:
    # dead-lettered unread); message 3 read 3 times, lost last in a shared batch (one more
    # run, alone).
    await rt.conn.execute("UPDATE pgmq.q_pz__work SET read_ct = 1 WHERE msg_id = $1", ids[1])
    await rt.conn.execute(
        "UPDATE pgmq.q_pz__work SET read_ct = 3,"
        ' headers = \'{"isolated": 3, "isolated_streak": 1}\' WHERE msg_id = $1',
        ids[2],
    )
    await rt.conn.execute("UPDATE pgmq.q_pz__work SET read_ct = 3 WHERE msg_id = $1", ids[3])
    ran: list[int] = []

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        ran.append(payload["n"])

    await rt.drain(rt.consumer("pz", "work", work), until=lambda: _settled(rt, 3, 1))
    assert ran == [0, 1, 3]  # the healthy one first, then each suspect in a batch of its own
    [letter] = await _dead_letters(rt)
    assert letter["error"]["type"] == "WorkerLost" and letter["msg_id"] == ids[2]
    assert "worker died" in letter["error"]["message"] and letter["attempts"] == 4
    isolated = await rt.conn.fetch(
        "SELECT msg_id, headers->'isolated' AS at FROM pgmq.a_pz__work ORDER BY msg_id"
    )
    assert [(r["msg_id"], r["at"]) for r in isolated] == [(ids[0], None), (ids[1], 2), (ids[3], 4)]


HUNG = PIPE.replace("timeout: 5s", "timeout: 300ms").replace("batch_size: 4", "batch_size: 1")


async def test_a_hung_def_handler_does_not_starve_its_step(rt: Runtime) -> None:
    await rt.apply(HUNG)
    release = threading.Event()
    for n in range(24):
        await _send_text(rt, "pz__work", json.dumps({"n": n, "hang": n < 4}))
    told: list[bool] = []

    def work(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        if payload["hang"] and ctx.attempt == 1:
            release.wait(60)  # never returns in time: abandoned, its slot freed
            told.append(ctx.abandoned)
        return payload

    consumer = rt.consumer("pz", "work", work, concurrency=2)
    try:
        await rt.drain(consumer, until=lambda: _settled(rt, 24, 0))
        assert consumer.abandoned == 4  # still running, and never in a healthy message's way
    finally:
        release.set()
    assert sorted(r["message"]["n"] for r in await rt.rows("pz__after")) == list(range(24))
    retried = await rt.conn.fetch(
        "SELECT message->'n' AS n, headers->'errors'->0->>'type' AS error FROM pgmq.a_pz__work"
        " WHERE read_ct = 2 ORDER BY 1"
    )
    assert [(r["n"], r["error"]) for r in retried] == [(n, "HandlerTimeout") for n in range(4)]
    deadline = time.monotonic() + 10
    while len(told) < 4 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert told == [True] * 4  # each abandoned attempt could see it was given up on


async def test_a_worker_with_too_many_stuck_threads_stops_to_be_replaced(rt: Runtime) -> None:
    await rt.apply(HUNG)
    release = threading.Event()
    for n in range(8):
        await _send_text(rt, "pz__work", json.dumps({"n": n}))

    def work(payload: dict[str, Any], ctx: StepContext) -> None:
        release.wait(60)

    consumer = rt.consumer("pz", "work", work, concurrency=1)
    stopping = asyncio.Event()
    try:
        with pytest.raises(TooManyAbandoned, match="still run in this worker"):
            await asyncio.wait_for(consumer.run(stopping), 30)
    finally:
        release.set()
    assert consumer.abandoned <= 3 and consumer.in_flight == 0
    assert await rt.count("pz__work") == 8 and await rt.count("pz_dead") == 0  # nothing lost


@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
async def test_the_runtime_pins_read_committed(rt: Runtime, isolation: str) -> None:
    await rt.apply(
        PIPE.replace("visibility_timeout: 30s", "visibility_timeout: 2s").replace("5s", "1800ms")
    )
    await rt.conn.execute(
        f"ALTER DATABASE {await rt.conn.fetchval('SELECT quote_ident(current_database())')}"
        f" SET default_transaction_isolation = '{isolation}'"
    )
    for n in range(3):
        await _send_text(rt, "pz__work", json.dumps({"n": n}))
    levels: list[str] = []

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        assert ctx.conn is not None
        levels.append(await ctx.conn.fetchval("SHOW transaction_isolation"))
        await ctx.conn.execute(
            "INSERT INTO side_effects (msg_id, note) VALUES ($1, 'done')", ctx.message_id
        )
        await asyncio.sleep(1.3)  # past half the visibility timeout: the lease is extended

    pool = await create_pool(rt.dsn, min_size=1, max_size=6)
    try:
        default = await pool.fetchval("SHOW default_transaction_isolation")
        assert default == isolation  # the database's default really is another level
        consumer = rt.consumer("pz", "work", work, pool=pool)
        await rt.drain(consumer, until=lambda: _settled(rt, 3, 0))
    finally:
        await pool.close()
    assert set(levels) == {"read committed"}
    assert await rt.conn.fetchval("SELECT count(*) FROM side_effects") == 3
    assert await rt.conn.fetchval("SELECT max(read_ct) FROM pgmq.a_pz__work") == 1
