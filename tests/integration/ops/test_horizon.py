"""`status` and `maintain` name what holds vacuum's horizon back."""

from __future__ import annotations

import asyncpg

from orchestrator.cli.views import maintain_text, status_text
from orchestrator.ops.horizon import horizon_holders
from orchestrator.ops.maintain import maintain_all
from orchestrator.ops.status import collect_status
from orchestrator.spec import Pipeline


async def _idle_in_transaction(dsn: str) -> tuple[asyncpg.Connection, int]:
    holder = await asyncpg.connect(dsn, server_settings={"application_name": "forgotten-job"})
    await holder.execute("BEGIN")
    await holder.fetchval("SELECT txid_current()")
    pid: int = await holder.fetchval("SELECT pg_backend_pid()")
    return holder, pid


async def test_an_open_transaction_is_named(conn: asyncpg.Connection, dsn: str) -> None:
    holder, pid = await _idle_in_transaction(dsn)
    try:
        found = await horizon_holders(conn, older_than=0)
        mine = [h for h in found if h.kind == "transaction" and f"pid {pid} " in h.name]
        assert len(mine) == 1
        assert "forgotten-job" in mine[0].name
        assert "idle in transaction" in mine[0].detail
        assert mine[0].since is not None and mine[0].xid_age is not None
    finally:
        await holder.close()
    after = await horizon_holders(conn, older_than=0)
    assert not [h for h in after if f"pid {pid} " in h.name]


async def test_young_transactions_are_not_alarms(conn: asyncpg.Connection, dsn: str) -> None:
    holder, pid = await _idle_in_transaction(dsn)
    try:
        assert not [h for h in await horizon_holders(conn) if f"pid {pid} " in h.name]
    finally:
        await holder.close()


async def test_status_and_maintain_warn(
    conn: asyncpg.Connection, dsn: str, orders: Pipeline
) -> None:
    holder, pid = await _idle_in_transaction(dsn)
    try:
        await conn.execute("SELECT pg_sleep(0.05)")
        status = await collect_status(conn)
        assert status.horizon == () or all(f"pid {pid} " not in h.name for h in status.horizon)
        report = await maintain_all(conn)
        assert all(f"pid {pid} " not in h.name for h in report.horizon)
        holders = await horizon_holders(conn, older_than=0)
        shown = status_text(
            type(status)(status.measured_at, status.window, status.pipelines, holders)
        )
        assert f"warning: vacuum is held back by transaction pid {pid} " in shown
        maintained = maintain_text(
            type(report)(
                report.partitions, report.archives, report.joins_deleted, report.problems, holders
            )
        )
        assert f"warning: vacuum is held back by transaction pid {pid} " in maintained
        assert status.to_json()["vacuum_held_back_by"] == [h.to_json() for h in status.horizon]
    finally:
        await holder.close()
