"""The heartbeat never stops a worker: its connections terminated again and again, at any
moment of a beat, it logs and beats again once the database answers."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from orchestrator.db import connect, create_pool
from orchestrator.runtime.heartbeat import Heartbeat


async def test_the_heartbeat_outlives_its_connections_being_terminated(dsn: str) -> None:
    name = f"beat_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(
        dsn, min_size=1, max_size=2, server_settings={"application_name": name}
    )
    admin = await connect(dsn)
    stopping = asyncio.Event()
    beat = Heartbeat(pool, ["q"], interval=0.005)
    task = asyncio.create_task(beat.run(stopping))
    terminated = 0
    try:
        for _ in range(300):
            terminated += await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1",
                name,
            )
            await asyncio.sleep(0.003 * (_ % 4))
            assert not task.done(), task.exception() if not task.cancelled() else "cancelled"
        assert terminated >= 50  # the beats really lost their connections, many times

        async def refreshed() -> bool:
            return bool(
                await admin.fetchval(
                    "SELECT count(*) FROM orchestrator.workers"
                    " WHERE id = $1::uuid AND heartbeat_at > now() - interval '1 second'",
                    beat.id,
                )
            )

        for _ in range(200):
            if await refreshed():
                break
            await asyncio.sleep(0.05)
        assert await refreshed(), "the heartbeat did not beat again once the database answered"
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)
        await pool.close()
        await admin.close()
    assert not await admin_rows(dsn, beat.id)  # a stopping heartbeat removes its row


async def admin_rows(dsn: str, worker_id: str) -> list[asyncpg.Record]:
    conn = await connect(dsn)
    try:
        return await conn.fetch("SELECT * FROM orchestrator.workers WHERE id = $1::uuid", worker_id)
    finally:
        await conn.close()
