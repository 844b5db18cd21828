"""Fixtures for the runtime core: pipelines built in code and applied by hand.

`apply_pipeline` does what `orchestrator apply` does for a pipeline, directly: the step queues
and the dead-letter queue (with insert notifications unless they are off), and the
`orchestrator.pipelines` row. Handlers are plain functions wrapped in `HandlerInfo`, so no
module needs importing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from orchestrator.db import connect, create_pool
from orchestrator.runtime.consumer import StepConsumer
from orchestrator.spec import HandlerInfo, Pipeline, parse_pipeline


def pipeline_from(yaml_text: str) -> Pipeline:
    """A pipeline from YAML text (its handlers are never imported)."""
    return parse_pipeline(yaml_text, Path("pipelines/test.yaml"))


async def apply_pipeline(conn: asyncpg.Connection, pipeline: Pipeline) -> None:
    """Create the pipeline's queues and record it, as `orchestrator apply` would."""
    notify = pipeline.queues.notify
    for queue in pipeline.queue_names():
        await conn.execute("SELECT pgmq.create($1)", queue)
        if notify.enabled:
            await conn.execute(
                "SELECT pgmq.enable_notify_insert($1, $2)", queue, round(notify.throttle * 1000)
            )
    await conn.execute(
        "INSERT INTO orchestrator.pipelines (name, spec, spec_hash, entry_step)"
        " VALUES ($1, $2, $3, $4)",
        pipeline.name,
        pipeline.to_json(),
        pipeline.spec_hash(),
        pipeline.entry_step,
    )


def handler(function: Callable[..., Any], *, takes_context: bool = True) -> HandlerInfo:
    """HandlerInfo for a test function (async or plain)."""
    return HandlerInfo(
        ref=f"tests:{function.__name__}",
        function=function,
        is_async=asyncio.iscoroutinefunction(function),
        takes_context=takes_context,
    )


async def noop(payload: dict[str, Any], ctx: Any) -> None:
    return None


@dataclass
class Runtime:
    """A test database with helpers to apply pipelines and run consumers."""

    dsn: str
    conn: asyncpg.Connection
    """For the test body (and `drain`'s checks, which run at the same time as handlers)."""
    aside: asyncpg.Connection
    """For handlers that need a connection of their own besides ctx.conn."""
    pool: asyncpg.Pool
    pipelines: dict[str, Pipeline] = field(default_factory=dict)

    async def apply(self, yaml_text: str) -> Pipeline:
        pipeline = pipeline_from(yaml_text)
        await apply_pipeline(self.conn, pipeline)
        self.pipelines[pipeline.name] = pipeline
        return pipeline

    def consumer(
        self,
        pipeline: str,
        step: str,
        function: Callable[..., Any],
        *,
        pool: asyncpg.Pool | None = None,
        takes_context: bool = True,
        **options: Any,
    ) -> StepConsumer:
        p = self.pipelines[pipeline]
        return StepConsumer(
            pool or self.pool,
            p,
            p.step(step),
            handler(function, takes_context=takes_context),
            **options,
        )

    async def drain(self, *consumers: StepConsumer, until: Callable[[], Awaitable[bool]]) -> None:
        """Run `consumers` until `until()` is true (checked every 50 ms, 30 s at most)."""
        stopping = asyncio.Event()
        tasks = [asyncio.create_task(c.run(stopping)) for c in consumers]
        try:
            async with asyncio.timeout(30):
                while not await until():
                    for task in tasks:
                        if task.done():
                            task.result()
                    await asyncio.sleep(0.05)
        finally:
            stopping.set()
            await asyncio.gather(*tasks)

    async def count(self, queue: str, *, archive: bool = False) -> int:
        table = f"pgmq.{'a' if archive else 'q'}_{queue}"
        return int(await self.conn.fetchval(f"SELECT count(*) FROM {table}"))

    async def rows(self, queue: str, *, archive: bool = False) -> list[asyncpg.Record]:
        table = f"pgmq.{'a' if archive else 'q'}_{queue}"
        return list(await self.conn.fetch(f"SELECT * FROM {table} ORDER BY msg_id"))

    async def send(self, queue: str, body: Any, headers: Any = None) -> int:
        """A raw message, as another program might send it (any JSON body)."""
        msg_id: int = await self.conn.fetchval(
            "SELECT * FROM pgmq.send($1, $2::jsonb, $3::jsonb)", queue, body, headers
        )
        return msg_id

    async def seconds_until_visible(self, queue: str, msg_id: int) -> float:
        """vt minus the database clock, in seconds."""
        value = await self.conn.fetchval(
            f"SELECT extract(epoch FROM vt - clock_timestamp())::float8 FROM pgmq.q_{queue}"
            " WHERE msg_id = $1",
            msg_id,
        )
        return float(value)

    async def make_visible(self, queue: str) -> None:
        await self.conn.execute(f"UPDATE pgmq.q_{queue} SET vt = clock_timestamp()")


@pytest.fixture
async def rt(dsn: str) -> AsyncIterator[Runtime]:
    conn = await connect(dsn)
    aside = await connect(dsn)
    pool = await create_pool(dsn, min_size=1, max_size=12)
    try:
        await conn.execute("CREATE TABLE side_effects (msg_id bigint, run_id uuid, note text)")
        yield Runtime(dsn, conn, aside, pool)
    finally:
        await pool.close()
        await aside.close()
        await conn.close()


def unique(prefix: str = "p") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"
