"""The per-process gate that lets a suspect run alone (runtime/solitude.py)."""

from __future__ import annotations

import asyncio

from orchestrator.runtime.solitude import Solitude


async def test_batches_share_the_gate() -> None:
    gate = Solitude()
    inside = 0
    most = 0

    async def batch() -> None:
        nonlocal inside, most
        async with gate.shared():
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(batch() for _ in range(5)))
    assert most == 5
    assert gate.sharing == 0


async def test_alone_waits_for_running_batches_and_holds_new_ones_back() -> None:
    gate = Solitude()
    events: list[str] = []
    first_in = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with gate.shared():
            events.append("first start")
            first_in.set()
            await release_first.wait()
            events.append("first end")

    async def suspect() -> None:
        async with gate.alone(wait=True) as alone:
            assert alone
            events.append("alone start")
            await asyncio.sleep(0.01)
            events.append("alone end")

    async def later() -> None:
        async with gate.shared():
            events.append("later")

    t1 = asyncio.create_task(first())
    await first_in.wait()
    t2 = asyncio.create_task(suspect())
    await asyncio.sleep(0)  # the suspect now waits for the first batch
    t3 = asyncio.create_task(later())
    await asyncio.sleep(0.01)
    assert events == ["first start"], "nothing may start while a suspect waits"
    release_first.set()
    await asyncio.gather(t1, t2, t3)
    assert events == ["first start", "first end", "alone start", "alone end", "later"]


async def test_a_cancelled_alone_waiter_lets_batches_go_on() -> None:
    gate = Solitude()
    holding = asyncio.Event()
    done = asyncio.Event()

    async def long_batch() -> None:
        async with gate.shared():
            holding.set()
            await done.wait()

    async def waiter() -> None:
        async with gate.alone(wait=True):
            raise AssertionError("never reached")

    long_task = asyncio.create_task(long_batch())
    await holding.wait()
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    held_back = asyncio.create_task(_enter_shared(gate))
    await asyncio.sleep(0.01)
    assert not held_back.done()
    waiting.cancel()
    await asyncio.wait_for(held_back, 5)
    done.set()
    await long_task


async def _enter_shared(gate: Solitude) -> None:
    async with gate.shared():
        pass


async def test_without_waiting_a_busy_gate_is_held_shared() -> None:
    gate = Solitude()
    async with gate.alone(wait=False) as alone:
        assert alone, "a free gate is taken alone at once"
    async with gate.shared(), gate.alone(wait=False) as alone:
        assert not alone
        assert gate.sharing == 2
    assert gate.sharing == 0


# -- a hand-off rings this process's consumers of the next steps ----------------------------


async def test_a_committed_hand_off_rings_the_next_steps_consumers_in_the_process() -> None:
    from orchestrator.runtime.consumer import StepConsumer
    from orchestrator.runtime.worker import _ring_successors
    from orchestrator.spec import HandlerInfo, parse_pipeline

    pipeline = parse_pipeline(
        "pipeline: p\nsteps:\n  a: {handler: m:f, next: [b, c]}\n"
        "  b: {handler: m:f, next: d}\n  c: {handler: m:f, next: d}\n  d: {handler: m:f}\n"
    )

    async def handler(payload: dict[str, object]) -> None:
        return None

    info = HandlerInfo("m:f", handler, is_async=True, takes_context=False)
    consumers = {
        name: StepConsumer(None, pipeline, pipeline.step(name), info)  # type: ignore[arg-type]
        for name in ("a", "b", "d")  # this process does not consume c
    }
    _ring_successors(list(consumers.values()))
    rings = {name: c._doorbell.rings for name, c in consumers.items()}
    assert consumers["a"].on_sent is not None and consumers["d"].on_sent is None
    consumers["a"].on_sent()
    after = {name: c._doorbell.rings for name, c in consumers.items()}
    assert after == {**rings, "b": rings["b"] + 1}


async def test_a_published_hand_off_rings_the_entry_consumers_of_matching_subscribers() -> None:
    from orchestrator.runtime.consumer import StepConsumer
    from orchestrator.runtime.worker import _ring_successors
    from orchestrator.spec import HandlerInfo, parse_pipeline

    orders = parse_pipeline(
        "pipeline: orders\nsteps:\n  create: {handler: m:f, publish: orders.created, next: ok}\n"
        "  ok: {handler: m:f}\n"
    )
    invoices = parse_pipeline(
        "pipeline: invoices\nsubscribe: orders.*\nsteps:\n  start: {handler: m:f, next: bill}\n"
        "  bill: {handler: m:f}\n"
    )
    payments = parse_pipeline(
        "pipeline: payments\nsubscribe: payments.#\nsteps:\n  take: {handler: m:f}\n"
    )

    async def handler(payload: dict[str, object]) -> None:
        return None

    info = HandlerInfo("m:f", handler, is_async=True, takes_context=False)
    consumers = [
        StepConsumer(None, p, p.step(s), info)  # type: ignore[arg-type]
        for p, s in ((orders, "create"), (orders, "ok"), (invoices, "start"), (invoices, "bill"))
    ] + [StepConsumer(None, payments, payments.step("take"), info)]  # type: ignore[arg-type]
    _ring_successors(consumers, [orders, invoices, payments])
    before = [c._doorbell.rings for c in consumers]
    assert consumers[0].on_sent is not None
    consumers[0].on_sent()
    after = [c._doorbell.rings for c in consumers]
    # orders.ok (next step) and invoices.start (subscribed entry); not bill, not payments.
    assert [a - b for a, b in zip(after, before, strict=True)] == [0, 1, 1, 0, 0]
