"""Which ticks of a schedule are due, skipped or next (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.ops.schedules import MAX_TICKS_PER_CALL, plan_ticks
from orchestrator.spec import Schedule

T = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)


def test_due_ticks_since_the_last_one() -> None:
    every_ten = Schedule(cron="*/10 * * * *", catch_up=3600)
    plan = plan_ticks(every_ten, since=T, now=T + timedelta(minutes=35))
    assert [t.minute for t in plan.due] == [10, 20, 30]
    assert plan.handled_until == plan.due[-1]
    assert plan.next_tick == T + timedelta(minutes=40)
    assert plan.skipped_from is None


def test_nothing_due_changes_nothing() -> None:
    plan = plan_ticks(Schedule(cron="0 * * * *"), since=T, now=T + timedelta(minutes=59))
    assert (plan.due, plan.handled_until) == ((), None)
    assert plan.next_tick == T + timedelta(hours=1)


def test_ticks_older_than_the_window_are_skipped() -> None:
    hourly = Schedule(cron="0 * * * *", catch_up=2 * 3600)
    plan = plan_ticks(hourly, since=T, now=T + timedelta(hours=10, minutes=30))
    assert plan.skipped_from == T + timedelta(hours=1)
    assert [t.hour for t in plan.due] == [21, 22]
    assert plan.window_start == T + timedelta(hours=8, minutes=30)


def test_without_catch_up_a_tick_still_fires_on_time() -> None:
    hourly = Schedule(cron="0 * * * *")
    assert plan_ticks(hourly, since=T, now=T + timedelta(hours=1, seconds=59)).due
    late = plan_ticks(hourly, since=T, now=T + timedelta(hours=1, minutes=2))
    assert late.due == ()
    assert late.handled_until == late.window_start  # the missed tick is done with
    assert late.next_tick == T + timedelta(hours=2)


def test_many_ticks_come_in_portions() -> None:
    every_minute = Schedule(cron="* * * * *", catch_up=7 * 86400)
    plan = plan_ticks(every_minute, since=T, now=T + timedelta(days=2))
    assert len(plan.due) == MAX_TICKS_PER_CALL
    assert plan.handled_until == plan.due[-1]
    assert plan.next_tick == plan.due[-1] + timedelta(minutes=1)


def test_time_zone_and_daylight_saving() -> None:
    berlin = Schedule(cron="30 2 * * *", timezone="Europe/Berlin", catch_up=86400)
    # 2030-03-31: clocks jump from 02:00 to 03:00 in Berlin, so 02:30 does not exist that day.
    start = datetime(2030, 3, 30, 12, 0, tzinfo=UTC)
    plan = plan_ticks(berlin, since=start, now=start + timedelta(days=1, hours=12))
    assert [t.isoformat() for t in plan.due] == []
    assert plan.next_tick.isoformat() == "2030-04-01T02:30:00+02:00"
