"""Schedules fire each tick exactly once: restarts, catch-up window, concurrent callers."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from orchestrator.ops.schedules import fire_due, next_ticks
from orchestrator.spec import Pipeline
from orchestrator.state import applied_pipelines
from tests.integration.ops import support

TICKS = """
pipeline: ticks
schedule:
  - {cron: "*/5 * * * *", payload: {kind: five}, catch_up: 1h, name: five}
steps:
  start:
    handler: clock.steps:start
    next: finish
  finish:
    handler: clock.steps:finish
"""

T0 = datetime(2030, 1, 15, 10, 2, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
async def ticks(conn: asyncpg.Connection) -> Pipeline:
    return await support.provision(conn, support.pipeline(TICKS))


async def wait_for_lock_wait(conn: asyncpg.Connection) -> None:
    """Return once another session of this database waits for a row lock."""
    for _ in range(500):
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no session started waiting for the schedule's row lock")


async def entry_messages(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM pgmq.q_ticks__start ORDER BY msg_id")


async def test_fires_each_tick_once_across_restarts(
    conn: asyncpg.Connection, ticks: Pipeline
) -> None:
    assert await fire_due(conn, [ticks], at(0)) == []  # first sight: counts from now
    assert await fire_due(conn, [ticks], at(1)) == []
    first = await fire_due(conn, [ticks], at(3.5))
    assert [f.tick for f in first] == [datetime(2030, 1, 15, 10, 5, tzinfo=UTC)]
    assert await fire_due(conn, [ticks], at(3.5)) == []  # no repeat
    # No scheduler for 26 minutes: every missed tick is within the one-hour catch-up window.
    later = await fire_due(conn, [ticks], at(29))
    assert [f.tick.minute for f in later] == [10, 15, 20, 25, 30]

    messages = await entry_messages(conn)
    assert len(messages) == 6
    assert {m["message"]["kind"] for m in messages} == {"five"}
    runs = [m["headers"]["run_id"] for m in messages]
    assert runs == [f.run_id for f in first + later]
    assert len(set(runs)) == 6
    headers = messages[0]["headers"]
    assert headers["pipeline"] == "ticks" and headers["step"] == "start"
    assert headers["schedule"] == "five"
    assert headers["tick"] == "2030-01-15T10:05:00+00:00"
    row = await conn.fetchrow("SELECT * FROM orchestrator.schedules WHERE pipeline = 'ticks'")
    assert row["last_tick"] == datetime(2030, 1, 15, 10, 30, tzinfo=UTC)
    assert row["next_tick"] == datetime(2030, 1, 15, 10, 35, tzinfo=UTC)


async def test_ticks_older_than_the_catch_up_window_are_skipped_and_logged(
    conn: asyncpg.Connection, ticks: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    await fire_due(conn, [ticks], at(0))
    with caplog.at_level(logging.WARNING, logger="orchestrator.ops.schedules"):
        fired = await fire_due(conn, [ticks], at(178))  # 13:00: window starts at 12:00
    assert fired[0].tick == datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
    assert fired[-1].tick == datetime(2030, 1, 15, 13, 0, tzinfo=UTC)
    assert len(fired) == 13
    assert "skipped the ticks from 2030-01-15T10:05:00+00:00" in caplog.text
    assert await fire_due(conn, [ticks], at(178)) == []


async def test_without_catch_up_only_a_tick_on_time_fires(conn: asyncpg.Connection) -> None:
    model = await support.provision(
        conn, support.pipeline(TICKS.replace("catch_up: 1h", "catch_up: 0"))
    )
    await fire_due(conn, [model], at(0))
    assert await fire_due(conn, [model], at(5)) == []  # 10:05 is two minutes late: missed
    on_time = await fire_due(conn, [model], at(8.5))  # 10:10 thirty seconds ago
    assert [f.tick.minute for f in on_time] == [10]


async def test_time_zone_of_the_schedule(conn: asyncpg.Connection, orders: Pipeline) -> None:
    """orders has a daily 06:00 Europe/Berlin schedule: 05:00 UTC in winter."""
    start = datetime(2030, 1, 15, 4, 58, tzinfo=UTC)
    await fire_due(conn, [orders], start)
    fired = await fire_due(conn, [orders], start + timedelta(minutes=2, seconds=30))
    daily = [f for f in fired if f.schedule == "daily"]
    assert [f.tick.astimezone(UTC) for f in daily] == [datetime(2030, 1, 15, 5, 0, tzinfo=UTC)]
    assert [f.schedule for f in fired] == ["every_five", "daily"]


async def test_concurrent_callers_fire_once(
    pool: asyncpg.Pool, conn: asyncpg.Connection, ticks: Pipeline
) -> None:
    async def call(now: datetime) -> int:
        async with pool.acquire() as c:
            return len(await fire_due(c, [ticks], now))

    assert sum(await asyncio.gather(*(call(at(0)) for _ in range(4)))) == 0
    assert sum(await asyncio.gather(*(call(at(29)) for _ in range(4)))) == 6
    assert len(await entry_messages(conn)) == 6


async def test_a_caller_waits_for_the_one_holding_the_schedule(
    pool: asyncpg.Pool, conn: asyncpg.Connection, ticks: Pipeline
) -> None:
    await fire_due(conn, [ticks], at(0))
    async with pool.acquire() as other:
        tx = other.transaction()
        await tx.start()
        await other.execute("SELECT * FROM orchestrator.schedules FOR UPDATE")
        waiting = asyncio.ensure_future(fire_due(conn, [ticks], at(4)))
        await wait_for_lock_wait(other)
        assert not waiting.done()
        await other.execute(
            "UPDATE orchestrator.schedules SET last_tick = $1", at(4) - timedelta(seconds=30)
        )
        await tx.commit()
        assert await waiting == []  # the holder handled 10:05 (it recorded it as done)
    assert await entry_messages(conn) == []


async def test_failure_keeps_the_tick_for_later(
    conn: asyncpg.Connection, ticks: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    await fire_due(conn, [ticks], at(0))
    await conn.execute("DELETE FROM orchestrator.pipelines WHERE name = 'ticks'")
    with caplog.at_level(logging.ERROR, logger="orchestrator.ops.schedules"):
        assert await fire_due(conn, [ticks], at(4)) == []
    assert "could not start its runs" in caplog.text
    await conn.execute(
        "INSERT INTO orchestrator.pipelines (name, spec, spec_hash, entry_step)"
        " VALUES ($1, $2, $3, $4)",
        ticks.name,
        ticks.to_json(),
        ticks.spec_hash(),
        ticks.entry_step,
    )
    assert [f.tick.minute for f in await fire_due(conn, [ticks], at(4))] == [5]


async def test_applied_read_model_fires_too(conn: asyncpg.Connection, ticks: Pipeline) -> None:
    applied = await applied_pipelines(conn, ["ticks"])
    await fire_due(conn, applied, at(0))
    assert len(await fire_due(conn, applied, at(4))) == 1


async def test_next_ticks(conn: asyncpg.Connection, ticks: Pipeline) -> None:
    [unseen] = await next_ticks(conn, now=at(0))
    assert (unseen.next_tick, unseen.recorded) == (at(3), False)
    await fire_due(conn, [ticks], at(0))
    await fire_due(conn, [ticks], at(4))
    [seen] = await next_ticks(conn, now=at(4))
    assert seen.recorded and seen.next_tick == at(8) and seen.last_tick == at(3)
    assert seen.overdue(at(4)) is False
    assert seen.overdue(at(30)) is True
    changed = support.pipeline(TICKS.replace("*/5 * * * *", "*/7 * * * *"))
    [moved] = await next_ticks(conn, [changed], now=at(4))
    assert moved.next_tick == datetime(2030, 1, 15, 10, 7, tzinfo=UTC)
