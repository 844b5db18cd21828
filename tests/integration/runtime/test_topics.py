"""Topics end to end: a step's `publish` keys start runs of the pipelines that `subscribe`."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.cli.views import trace_text
from orchestrator.compiler import apply
from orchestrator.ops.trace import trace_run
from orchestrator.runtime import StepContext, start
from orchestrator.runtime.consumer import StepConsumer
from tests.integration.runtime.conftest import Runtime, pipeline_from

ORDERS = """
pipeline: orders
defaults:
  retry: {max_attempts: 3, backoff: constant, initial: 0s, jitter: false}
steps:
  create: {handler: t:create, batch_size: 5, publish: orders.created, next: confirm}
  confirm: {handler: t:confirm}
"""

INVOICES = """
pipeline: invoices
subscribe: orders.*
steps:
  start: {handler: t:start, group_by: order, next: bill}
  bill: {handler: t:bill}
"""

AUDIT = """
pipeline: audit
subscribe: '#'
steps:
  log: {handler: t:log}
"""

PAYMENTS = """
pipeline: payments
subscribe: [payments.*]
steps:
  take: {handler: t:take}
"""


async def _apply(rt: Runtime, *texts: str) -> None:
    pipelines = [pipeline_from(text) for text in texts]
    await apply(rt.conn, pipelines)
    rt.pipelines.update({p.name: p for p in pipelines})


async def echo(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    return {**payload, "seen_by": ctx.step}


def _every_step(rt: Runtime, **handlers: Any) -> list[StepConsumer]:
    return [
        rt.consumer(name, step, handlers.get(f"{name}.{step}", echo))
        for name, pipeline in rt.pipelines.items()
        for step in pipeline.steps
    ]


async def test_each_published_output_starts_one_run_of_each_matching_subscriber(
    rt: Runtime,
) -> None:
    await _apply(rt, ORDERS, INVOICES, AUDIT, PAYMENTS)
    order_runs = {str(await start("orders", {"order": n}, conn=rt.conn)) for n in range(7)}

    async def settled() -> bool:
        return (
            await rt.count("invoices__bill", archive=True) >= 7
            and await rt.count("audit__log", archive=True) >= 7
            and await rt.count("orders__confirm", archive=True) >= 7
        )

    await rt.drain(*_every_step(rt), until=settled)

    assert await rt.count("invoices__start", archive=True) == 7
    assert await rt.count("invoices__bill", archive=True) == 7
    assert await rt.count("audit__log", archive=True) == 7
    assert await rt.count("payments__take") == 0
    assert await rt.count("payments__take", archive=True) == 0
    starts = await rt.rows("invoices__start", archive=True)
    assert sorted(m["message"]["order"] for m in starts) == list(range(7))
    assert all(m["message"]["seen_by"] == "create" for m in starts)
    # started as start() starts a run: the entry step's group_by applies
    assert sorted(m["headers"]["x-pgmq-group"] for m in starts) == [str(n) for n in range(7)]
    published = [m["headers"]["published"] for m in starts]
    assert {p["topic"] for p in published} == {"orders.created"}
    assert {(p["pipeline"], p["step"]) for p in published} == {("orders", "create")}
    assert {p["run_id"] for p in published} == order_runs
    # Each subscriber's run is a run of its own, and keeps where it came from at every step.
    bills = await rt.rows("invoices__bill", archive=True)
    invoice_runs = {m["headers"]["run_id"] for m in bills}
    assert len(invoice_runs) == 7
    assert not invoice_runs & order_runs
    assert {m["headers"]["published"]["run_id"] for m in bills} == order_runs
    assert {m["headers"]["run_id"] for m in starts} == invoice_runs
    # trace shows the whole run, from its entry step, and where it came from.
    bill = bills[0]["headers"]
    trace = await trace_run(rt.conn, bill["run_id"])
    assert [(e.pipeline, e.step, e.state) for e in trace.entries] == [
        ("invoices", "start", "done"),
        ("invoices", "bill", "done"),
    ]
    assert trace.published == bill["published"]
    assert (
        f"published as orders.created by orders.create (run {bill['published']['run_id']}, "
        f"msg {bill['published']['msg_id']})"
    ) in trace_text(trace)
    audit_runs = {m["headers"]["run_id"] for m in await rt.rows("audit__log", archive=True)}
    assert len(audit_runs) == 7
    assert not audit_runs & (invoice_runs | order_runs)


async def test_a_failed_attempt_publishes_nothing_and_its_success_publishes_once(
    rt: Runtime,
) -> None:
    only_create = (
        ORDERS.replace(", next: confirm", "")
        .replace("  confirm: {handler: t:confirm}\n", "")
        .replace("initial: 0s", "initial: 1h, max: 1h")
    )
    await _apply(rt, only_create, AUDIT)
    await start("orders", {"order": 1}, conn=rt.conn)

    async def flaky(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        await ctx.conn.execute("INSERT INTO side_effects (note) VALUES ('attempt')")
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return payload

    async def failed_once() -> bool:
        return bool(
            await rt.conn.fetchval(
                "SELECT count(*) FROM pgmq.q_orders__create WHERE headers ? 'errors'"
            )
        )

    await rt.drain(rt.consumer("orders", "create", flaky), until=failed_once)
    assert await rt.count("audit__log") == 0
    assert await rt.count("orders__create") == 1
    await rt.make_visible("orders__create")  # the retry, now rather than in an hour

    async def handed_off() -> bool:
        return await rt.count("orders__create", archive=True) == 1

    await rt.drain(rt.consumer("orders", "create", flaky), until=handed_off)
    [published] = await rt.rows("audit__log")
    assert published["message"] == {"order": 1}
    assert published["headers"]["published"]["topic"] == "orders.created"
    assert await rt.conn.fetchval("SELECT count(*) FROM side_effects") == 1  # rolled back once


async def test_complete_counts_published_messages_as_sent(rt: Runtime) -> None:
    from orchestrator.runtime import handoff
    from orchestrator.runtime.handoff import Outcomes, StepTarget

    await _apply(rt, ORDERS, INVOICES, AUDIT, PAYMENTS)
    await start("orders", {"order": 1}, conn=rt.conn)
    orders = rt.pipelines["orders"]
    target = StepTarget.of(orders, orders.step("create"))
    [message] = await handoff.read(rt.conn, target.queue, 30, 1)
    async with rt.conn.transaction():
        assert await handoff.claim(rt.conn, target.queue, [message]) == {message.msg_id}
        done = Outcomes()
        done.done(message, handoff.encode_object({"order": 1}))
        completion, _ = await handoff.complete(rt.conn, target, done)
    # one to the next step (confirm), one run of invoices, one of audit; none of payments
    assert (completion.handed_off, completion.sent) == (1, 3)
    assert await rt.count("invoices__start") == 1
    assert await rt.count("audit__log") == 1


async def test_start_refuses_a_published_header_the_runtime_alone_sets(rt: Runtime) -> None:
    from orchestrator.errors import QueueError

    await _apply(rt, AUDIT)
    forged = {"published": {"topic": "orders.created", "pipeline": "orders"}}
    with pytest.raises(QueueError, match="headers may not set published"):
        await start("audit", {"order": 1}, conn=rt.conn, headers=forged)
    assert await rt.count("audit__log") == 0
