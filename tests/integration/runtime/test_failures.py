"""Retries, dead letters, timeouts and poison messages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.runtime import Fail, Retry, StepContext, start
from tests.integration.runtime.conftest import Runtime

ONE_STEP = """
pipeline: solo
dead_letter: solo_dead
defaults:
  visibility_timeout: 30s
  timeout: 2s
  retry: {max_attempts: 3, backoff: exponential, initial: 10s, max: 1h, jitter: false}
steps:
  work: {handler: t:work, next: after}
  after: {handler: t:after}
"""


async def _failed_once(rt: Runtime) -> bool:
    return bool(
        await rt.conn.fetchval("SELECT count(*) FROM pgmq.q_solo__work WHERE headers ? 'errors'")
    )


async def _dead(rt: Runtime, n: int = 1) -> bool:
    return await rt.count("solo_dead") >= n


async def _one_attempt(rt: Runtime, handler: Any, until: Any) -> None:
    """Run the step's consumer until `until(rt)` holds."""
    await rt.drain(rt.consumer("solo", "work", handler), until=lambda: until(rt))


async def test_retry_moves_vt_by_the_backoff(rt: Runtime) -> None:
    await rt.apply(ONE_STEP)
    await start("solo", {}, conn=rt.conn)

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        raise ValueError(f"attempt {ctx.attempt}")

    await _one_attempt(rt, work, _failed_once)
    [msg] = await rt.rows("solo__work")
    assert msg["read_ct"] == 1
    assert 9 < await rt.seconds_until_visible("solo__work", msg["msg_id"]) <= 10
    assert msg["headers"]["errors"] == [
        {
            "attempt": 1,
            "type": "ValueError",
            "message": "attempt 1",
            "at": msg["headers"]["errors"][0]["at"],
        }
    ]

    await rt.make_visible("solo__work")
    await _one_attempt(rt, work, lambda rt: _errors(rt, 2))
    [msg] = await rt.rows("solo__work")
    assert msg["read_ct"] == 2
    assert 19 < await rt.seconds_until_visible("solo__work", msg["msg_id"]) <= 20
    assert [e["message"] for e in msg["headers"]["errors"]] == ["attempt 1", "attempt 2"]


async def _errors(rt: Runtime, n: int) -> bool:
    value = await rt.conn.fetchval(
        "SELECT max(jsonb_array_length(headers->'errors')) FROM pgmq.q_solo__work"
    )
    return (value or 0) >= n


@pytest.mark.parametrize(
    ("backoff", "expected"), [("constant", [5, 5, 5]), ("linear", [5, 10, 15])]
)
async def test_constant_and_linear_backoff(rt: Runtime, backoff: str, expected: list[int]) -> None:
    await rt.apply(
        ONE_STEP.replace("exponential, initial: 10s", f"{backoff}, initial: 5s").replace(
            "max_attempts: 3", "max_attempts: 5"
        )
    )
    await start("solo", {}, conn=rt.conn)

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        raise ValueError("no")

    for attempt, wait in enumerate(expected, start=1):
        await _one_attempt(rt, work, lambda rt, a=attempt: _errors(rt, a))
        [msg] = await rt.rows("solo__work")
        assert wait - 1 < await rt.seconds_until_visible("solo__work", msg["msg_id"]) <= wait
        await rt.make_visible("solo__work")


async def test_jitter_keeps_the_wait_between_half_and_full(rt: Runtime) -> None:
    await rt.apply(
        ONE_STEP.replace("jitter: false", "jitter: true").replace(
            "work: {handler", "work: {batch_size: 20, handler"
        )
    )
    await rt.conn.execute(
        "SELECT orchestrator.start_runs('solo', array_fill('{}'::jsonb, ARRAY[20]))"
    )

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        raise ValueError("no")

    async def all_failed(rt: Runtime) -> bool:
        return bool(
            await rt.conn.fetchval("SELECT bool_and(headers ? 'errors') FROM pgmq.q_solo__work")
        )

    await _one_attempt(rt, work, all_failed)
    waits = [
        await rt.seconds_until_visible("solo__work", m["msg_id"])
        for m in await rt.rows("solo__work")
    ]
    assert all(4 < w <= 10 for w in waits), waits
    assert len({round(w, 2) for w in waits}) > 1  # spread out


async def test_dead_letter_after_max_attempts(rt: Runtime) -> None:
    await rt.apply(ONE_STEP.replace("max_attempts: 3", "max_attempts: 2"))
    run_id = await start("solo", {"order": 7}, conn=rt.conn, headers={"tenant": "t1"})

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        raise KeyError(f"missing on attempt {ctx.attempt}")

    await _one_attempt(rt, work, _failed_once)
    await rt.make_visible("solo__work")
    await _one_attempt(rt, work, _dead)

    assert await rt.count("solo__work") == 0
    assert await rt.count("solo__work", archive=True) == 0
    [dead] = await rt.rows("solo_dead")
    body = dead["message"]
    assert dead["headers"] == {
        "run_id": str(run_id),
        "pipeline": "solo",
        "step": "work",
        "dead_letter": True,
    }
    assert body["pipeline"] == "solo" and body["step"] == "work" and body["queue"] == "solo__work"
    assert body["run_id"] == str(run_id)
    assert body["payload"] == {"order": 7}
    assert body["attempts"] == 2 and body["permanent"] is False
    assert body["error"]["type"] == "KeyError"
    assert "missing on attempt 2" in body["error"]["message"]
    assert "in work" in body["error"]["traceback"] and "KeyError" in body["error"]["traceback"]
    assert [e["attempt"] for e in body["headers"]["errors"]] == [1, 2]
    assert body["headers"]["tenant"] == "t1"
    assert datetime.fromisoformat(body["failed_at"]) <= datetime.now(UTC)
    assert isinstance(body["msg_id"], int)


async def test_fail_dead_letters_at_once(rt: Runtime) -> None:
    await rt.apply(ONE_STEP)
    await start("solo", {}, conn=rt.conn)

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        raise Fail("bad order number")

    await _one_attempt(rt, work, _dead)
    [dead] = await rt.rows("solo_dead")
    assert dead["message"]["permanent"] is True
    assert dead["message"]["attempts"] == 1
    assert dead["message"]["error"]["type"] == "Fail"
    assert dead["message"]["error"]["message"] == "bad order number"


@pytest.mark.parametrize(
    "after",
    [42, timedelta(seconds=42), "datetime"],
)
async def test_retry_after(rt: Runtime, after: Any) -> None:
    await rt.apply(ONE_STEP)
    await start("solo", {}, conn=rt.conn)
    if after == "datetime":
        after = datetime.now(UTC) + timedelta(seconds=42)

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        raise Retry(after=after)

    await _one_attempt(rt, work, _failed_once)
    [msg] = await rt.rows("solo__work")
    assert 40 < await rt.seconds_until_visible("solo__work", msg["msg_id"]) <= 42
    assert msg["headers"]["errors"][0]["type"] == "Retry"


async def test_retry_still_counts_against_max_attempts(rt: Runtime) -> None:
    await rt.apply(ONE_STEP.replace("max_attempts: 3", "max_attempts: 1"))
    await start("solo", {}, conn=rt.conn)

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        raise Retry(after=1)

    await _one_attempt(rt, work, _dead)
    [dead] = await rt.rows("solo_dead")
    assert dead["message"]["error"]["type"] == "Retry"


@pytest.mark.parametrize("body", [[1, 2], "text", 12, None, True])
async def test_poison_payload_does_not_block_the_queue(rt: Runtime, body: Any) -> None:
    await rt.apply(ONE_STEP.replace("work: {handler", "work: {batch_size: 3, handler"))
    poison = await rt.send("solo__work", body)
    await start("solo", {"fine": 1}, conn=rt.conn)
    seen: list[Any] = []

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        seen.append(payload)

    async def done(rt: Runtime) -> bool:
        return await rt.count("solo_dead") == 1 and await rt.count("solo__after") == 1

    await _one_attempt(rt, work, done)
    assert seen == [{"fine": 1}]
    [dead] = await rt.rows("solo_dead")
    assert dead["message"]["msg_id"] == poison
    assert dead["message"]["permanent"] is True
    assert dead["message"]["error"]["type"] == "InvalidPayload"
    assert dead["message"]["payload"] == body
    assert await rt.count("solo__work") == 0


async def test_poison_payload_alone_in_a_batch(rt: Runtime) -> None:
    await rt.apply(ONE_STEP)
    await rt.send("solo__work", ["not", "an", "object"])
    await start("solo", {"fine": 1}, conn=rt.conn)

    async def done(rt: Runtime) -> bool:
        return await rt.count("solo_dead") == 1 and await rt.count("solo__after") == 1

    await _one_attempt(rt, _ok, done)


async def _ok(payload: dict[str, Any], ctx: StepContext) -> None:
    return None


async def test_handler_timeout_is_a_failed_attempt(rt: Runtime) -> None:
    await rt.apply(ONE_STEP.replace("timeout: 2s", "timeout: 0.3s"))
    await start("solo", {}, conn=rt.conn)
    cancelled = asyncio.Event()

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await _one_attempt(rt, work, _failed_once)
    assert cancelled.is_set()
    [msg] = await rt.rows("solo__work")
    [error] = msg["headers"]["errors"]
    assert error["type"] == "HandlerTimeout" and "0.3s" in error["message"]


async def test_handler_timeout_inside_a_query(rt: Runtime) -> None:
    await rt.apply(
        ONE_STEP.replace("timeout: 2s", "timeout: 0.5s").replace(
            "work: {handler", "work: {batch_size: 2, handler"
        )
    )
    await rt.conn.execute(
        "SELECT orchestrator.start_runs('solo',"
        " ARRAY['{\"slow\": true}', '{\"slow\": false}']::jsonb[])"
    )

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        await ctx.conn.execute(
            "INSERT INTO side_effects VALUES (1, $1, $2)", ctx.run_id, str(payload["slow"])
        )
        if payload["slow"]:
            await ctx.conn.execute("SELECT pg_sleep(30)")

    async def done(rt: Runtime) -> bool:
        return await _failed_once(rt) and await rt.count("solo__after") == 1

    await _one_attempt(rt, work, done)
    notes = [r["note"] for r in await rt.conn.fetch("SELECT note FROM side_effects")]
    assert notes == ["False"]


async def test_output_that_is_not_an_object_is_a_permanent_failure(rt: Runtime) -> None:
    await rt.apply(ONE_STEP)
    await start("solo", {}, conn=rt.conn)

    async def work(payload: dict[str, Any], ctx: StepContext) -> Any:
        return [1, 2, 3]

    await _one_attempt(rt, work, _dead)
    [dead] = await rt.rows("solo_dead")
    assert dead["message"]["error"]["type"] == "InvalidOutput"
    assert "must be a JSON object" in dead["message"]["error"]["message"]


async def test_output_with_a_nul_character_is_refused_not_stuck(rt: Runtime) -> None:
    await rt.apply(ONE_STEP.replace("work: {handler", "work: {batch_size: 2, handler"))
    await rt.conn.execute(
        "SELECT orchestrator.start_runs('solo', ARRAY['{\"i\": 1}', '{\"i\": 2}']::jsonb[])"
    )

    async def work(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        if payload["i"] == 1:
            return {"text": "a\x00b"}
        return payload

    async def done(rt: Runtime) -> bool:
        return await rt.count("solo_dead") == 1 and await rt.count("solo__after") == 1

    await _one_attempt(rt, work, done)
    [dead] = await rt.rows("solo_dead")
    assert "NUL" in dead["message"]["error"]["message"]


async def test_error_message_with_nul_is_stored(rt: Runtime) -> None:
    await rt.apply(ONE_STEP.replace("max_attempts: 3", "max_attempts: 1"))
    await start("solo", {}, conn=rt.conn)

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        raise ValueError("bad\x00byte")

    await _one_attempt(rt, work, _dead)
    [dead] = await rt.rows("solo_dead")
    assert dead["message"]["error"]["message"] == "bad\\x00byte"


async def test_errors_keep_the_last_five(rt: Runtime) -> None:
    await rt.apply(ONE_STEP.replace("max_attempts: 3", "max_attempts: 10"))
    await start("solo", {}, conn=rt.conn)

    async def work(payload: dict[str, Any], ctx: StepContext) -> None:
        raise ValueError(str(ctx.attempt))

    for attempt in range(1, 8):
        await _one_attempt(rt, work, lambda rt, a=attempt: _attempted(rt, a))
        await rt.make_visible("solo__work")
    [msg] = await rt.rows("solo__work")
    assert [e["message"] for e in msg["headers"]["errors"]] == ["3", "4", "5", "6", "7"]


async def _attempted(rt: Runtime, attempt: int) -> bool:
    value = await rt.conn.fetchval(
        "SELECT (headers->'errors'->-1->>'attempt')::int FROM pgmq.q_solo__work"
    )
    return value == attempt
