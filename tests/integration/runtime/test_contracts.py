"""Contracts at run time: start() refuses before enqueueing, the hand-off dead-letters outputs
that break a contract (once, never retried), pydantic handlers, the spec hash in headers."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from orchestrator.errors import ContractError
from orchestrator.runtime import StepContext, start, start_many
from tests.integration.runtime.conftest import Runtime

TYPED = """
pipeline: typed
dead_letter: typed_dead
defaults:
  retry: {max_attempts: 5, initial: 10s, jitter: false}
steps:
  take:
    handler: t:take
    input:
      type: object
      properties:
        order: {type: string, pattern: "^WO-"}
        quantity: {type: integer, minimum: 1}
      required: [order, quantity]
    output:
      type: object
      properties: {order: {type: string}, lines: {type: array, items: {type: integer}}}
      required: [order, lines]
    next: give
  give:
    handler: t:give
"""


async def _dead(rt: Runtime) -> bool:
    return await rt.count("typed_dead") >= 1


async def test_start_refuses_a_payload_breaking_the_entry_contract(rt: Runtime) -> None:
    await rt.apply(TYPED)
    with pytest.raises(ContractError) as caught:
        await start("typed", {"order": "WO-1", "quantity": 0}, conn=rt.conn)
    assert str(caught.value) == (
        "the payload breaks the input contract of step 'take' of pipeline 'typed' at "
        "/quantity: must be bigger than or equal to 1 (rule 'minimum')"
    )
    with pytest.raises(ContractError, match=r"payload 2 of 2 .* at /order: must match pattern"):
        await start_many(
            "typed", [{"order": "WO-1", "quantity": 1}, {"order": "X", "quantity": 1}], conn=rt.conn
        )
    assert await rt.count("typed__take") == 0


async def test_a_start_meeting_the_entry_contract_enqueues_each_run_once(rt: Runtime) -> None:
    await rt.apply(TYPED)
    payloads = [{"order": "WO-1", "quantity": 1}, {"order": "WO-2", "quantity": 2}]
    run_ids = await start_many("typed", payloads, conn=rt.conn)
    run_ids.append(await start("typed", {"order": "WO-3", "quantity": 3}, conn=rt.conn))
    rows = await rt.rows("typed__take")
    assert [r["headers"]["run_id"] for r in rows] == [str(r) for r in run_ids]
    assert [r["message"]["order"] for r in rows] == ["WO-1", "WO-2", "WO-3"]


async def test_every_message_carries_the_spec_hash_it_was_sent_under(rt: Runtime) -> None:
    pipeline = await rt.apply(TYPED)
    await start("typed", {"order": "WO-1", "quantity": 2}, conn=rt.conn)
    [first] = await rt.rows("typed__take")
    assert first["headers"]["spec_hash"] == pipeline.spec_hash()

    async def take(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return {"order": payload["order"], "lines": [1, 2]}

    async def handed_off() -> bool:
        return await rt.count("typed__give") == 1

    await rt.drain(rt.consumer("typed", "take", take), until=handed_off)
    [second] = await rt.rows("typed__give")
    assert second["headers"]["spec_hash"] == pipeline.spec_hash()
    assert second["message"] == {"order": "WO-1", "lines": [1, 2]}


async def test_an_output_breaking_the_contract_is_dead_lettered_at_once(rt: Runtime) -> None:
    await rt.apply(TYPED)
    await start("typed", {"order": "WO-1", "quantity": 2}, conn=rt.conn)
    calls = 0

    async def take(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"order": payload["order"], "lines": [1, "two"]}

    await rt.drain(rt.consumer("typed", "take", take), until=lambda: _dead(rt))
    [dead] = await rt.rows("typed_dead")
    assert calls == 1
    assert dead["message"]["permanent"] is True
    assert dead["message"]["error"]["type"] == "ContractError"
    assert dead["message"]["error"]["message"] == (
        "the handler output breaks the output contract of step 'take' at /lines/1: "
        "must be integer (rule 'type')"
    )
    assert await rt.count("typed__give") == 0


async def test_a_message_breaking_the_input_never_reaches_the_handler(rt: Runtime) -> None:
    await rt.apply(TYPED)
    await rt.send("typed__take", {"order": "WO-1"})  # as an older sender might
    calls = 0

    async def take(payload: dict[str, Any], ctx: StepContext) -> None:
        nonlocal calls
        calls += 1

    await rt.drain(rt.consumer("typed", "take", take), until=lambda: _dead(rt))
    [dead] = await rt.rows("typed_dead")
    assert calls == 0
    assert dead["message"]["error"]["type"] == "ContractError"
    assert (
        "input contract of step 'take' at /quantity: is missing (rule 'required')"
        in (dead["message"]["error"]["message"])
    )


class Order(BaseModel):
    order: str
    quantity: int


class Lines(BaseModel):
    order: str
    lines: list[int]


async def take_model(payload: Order, ctx: StepContext) -> Lines:
    return Lines(order=payload.order, lines=list(range(payload.quantity)))


async def test_a_pydantic_handler_gets_an_instance_and_may_return_one(rt: Runtime) -> None:
    await rt.apply(TYPED)
    await start("typed", {"order": "WO-7", "quantity": 3}, conn=rt.conn)

    async def handed_off() -> bool:
        return await rt.count("typed__give") == 1

    await rt.drain(rt.consumer("typed", "take", take_model), until=handed_off)
    [message] = await rt.rows("typed__give")
    assert message["message"] == {"order": "WO-7", "lines": [0, 1, 2]}
