"""Plain `def` handlers run in a thread pool, without ctx.conn."""

from __future__ import annotations

import threading
import time
from typing import Any

from orchestrator.runtime import Fail, StepContext, start
from tests.integration.runtime.conftest import Runtime

PIPE = """
pipeline: plain
defaults: {timeout: 0.5s, retry: {jitter: false}}
steps:
  work: {handler: t:work, next: done, batch_size: 3}
  done: {handler: t:done}
"""


async def test_plain_handler_runs_in_a_thread_without_conn(rt: Runtime) -> None:
    await rt.apply(PIPE)
    await start("plain", {"n": 1}, conn=rt.conn)
    seen: list[tuple[int, Any, str]] = []
    loop_thread = threading.get_ident()

    def work(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        seen.append((threading.get_ident(), ctx.conn, ctx.idempotency_key))
        return {"n": payload["n"] * 10}

    async def handed() -> bool:
        return await rt.count("plain__done") == 1

    await rt.drain(rt.consumer("plain", "work", work), until=handed)
    [(thread, conn, key)] = seen
    assert thread != loop_thread and conn is None
    [msg] = await rt.rows("plain__done")
    assert msg["message"] == {"n": 10}
    assert key == f"{msg['headers']['run_id']}:work"


async def test_plain_handler_without_ctx(rt: Runtime) -> None:
    await rt.apply(PIPE)
    await start("plain", {"n": 2}, conn=rt.conn)

    def work(payload: dict[str, Any]) -> None:
        return None

    async def handed() -> bool:
        return await rt.count("plain__done") == 1

    await rt.drain(rt.consumer("plain", "work", work, takes_context=False), until=handed)
    [msg] = await rt.rows("plain__done")
    assert msg["message"] == {"n": 2}


async def test_plain_handler_failures_and_timeouts(rt: Runtime) -> None:
    await rt.apply(PIPE)
    await rt.conn.execute(
        "SELECT orchestrator.start_runs('plain', ARRAY['{\"do\": \"fail\"}',"
        ' \'{"do": "sleep"}\', \'{"do": "ok"}\']::jsonb[])'
    )

    def work(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        if payload["do"] == "fail":
            raise Fail("nope")
        if payload["do"] == "sleep":
            time.sleep(1.0)
        return payload

    async def settled() -> bool:
        return (
            await rt.count("plain__done") == 1
            and await rt.count("plain_dlq") == 1
            and bool(
                await rt.conn.fetchval(
                    "SELECT count(*) FROM pgmq.q_plain__work WHERE headers ? 'errors'"
                )
            )
        )

    await rt.drain(rt.consumer("plain", "work", work), until=settled)
    [retry] = await rt.rows("plain__work")
    assert retry["message"] == {"do": "sleep"}
    assert retry["headers"]["errors"][0]["type"] == "HandlerTimeout"
    [dead] = await rt.rows("plain_dlq")
    assert dead["message"]["payload"] == {"do": "fail"}
