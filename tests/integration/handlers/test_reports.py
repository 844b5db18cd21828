"""The daily report: figures of one day's work orders, rendered, mailed once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import pytest

from orchestrator import Fail
from pipelines.handlers.reports import collect, deliver, render, report_day
from pipelines.standins.smtp import SmtpSink


def test_report_day_reads_the_period_in_the_time_zone() -> None:
    # 23:30 UTC on 1 March is already 2 March in Berlin.
    late = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert report_day("today", "UTC", late) == date(2026, 3, 1)
    assert report_day("today", "Europe/Berlin", late) == date(2026, 3, 2)
    assert report_day("yesterday", "Europe/Berlin", late) == date(2026, 3, 1)
    assert report_day(None, "UTC", late) == date(2026, 2, 28)
    assert report_day("2025-12-24", "UTC", late) == date(2025, 12, 24)
    with pytest.raises(ValueError, match="period must be"):
        report_day("last week", "UTC", late)


async def _orders(conn: asyncpg.Connection) -> None:
    """Four orders of 2026-03-02 (Berlin) in two plants, one of the day before."""
    rows = [
        ("WO-1", "1000", 10, "2026-03-02 08:00+01", "completed"),
        ("WO-2", "1000", 5, "2026-03-02 12:00+01", "labelled"),
        ("WO-3", "2000", 7, "2026-03-02 23:30+01", "completed"),
        ("WO-4", "2000", 1, "2026-03-02 00:10+01", "imported"),
        ("WO-5", "2000", 99, "2026-03-01 23:59+01", "completed"),
    ]
    for number, plant, quantity, at, status in rows:
        await conn.execute(
            "INSERT INTO work_orders (work_order_no, material, description, quantity, plant, "
            "due_date, imported_at, status) VALUES ($1, 'M', 'd', $2, $3, '2026-04-01', "
            "$4::text::timestamptz, $5)",
            number,
            quantity,
            plant,
            at,
            status,
        )
    for number in ("WO-1", "WO-3", "WO-5"):
        await conn.execute(
            "INSERT INTO sap_sync (work_order_no, sap_order, http_status, attempts, "
            "idempotency_key) VALUES ($1, '4000', 201, 1, $1)",
            number,
        )


async def test_collect_render_deliver(
    app_conn: asyncpg.Connection,
    make_ctx: Callable[..., Any],
    handler_env: dict[str, str],
    smtp_sink: SmtpSink,
) -> None:
    await _orders(app_conn)
    payload = {"period": "2026-03-02", "timezone": "Europe/Berlin"}
    run_id = make_ctx("collect", pipeline="reports").run_id
    collected = await collect(payload, make_ctx("collect", run_id, pipeline="reports"))
    assert collected == {"day": "2026-03-02", "timezone": "Europe/Berlin"}
    figures = await app_conn.fetchval("SELECT figures FROM reports")
    assert figures["totals"] == {
        "imported": 4,
        "quantity": 23,
        "labelled": 0,
        "synced": 2,
        "notified": 0,
        "completed": 2,
    }
    assert figures["plants"] == [
        {"plant": "1000", "orders": 2, "quantity": 15, "completed": 1, "not_in_sap": 1},
        {"plant": "2000", "orders": 2, "quantity": 8, "completed": 1, "not_in_sap": 1},
    ]
    assert [o["work_order_no"] for o in figures["open"]] == ["WO-4", "WO-2"]

    rendered = await render(collected, make_ctx("render", run_id, pipeline="reports"))
    body, attachment = await app_conn.fetchrow("SELECT body, attachment_csv FROM reports")
    assert "Work orders imported on 2026-03-02 (Europe/Berlin)" in body
    assert "WO-4" in body and "missing: SAP, mail" in body
    assert attachment.splitlines() == [
        "day,plant,orders,quantity,completed,not_in_sap",
        "2026-03-02,1000,2,15,1,1",
        "2026-03-02,2000,2,8,1,1",
    ]

    ctx = make_ctx("deliver", run_id, pipeline="reports")
    delivered = await deliver(rendered, ctx)
    assert delivered["sent"] is True
    [mail] = smtp_sink.wait_for(1)
    assert mail.rcpt_tos == ("plant-management@example.com",)
    assert mail.subject == "Work orders 2026-03-02: 4 imported, 2 completed"
    [csv_part] = list(mail.message.iter_attachments())
    assert csv_part.get_filename() == "work-orders-2026-03-02.csv"
    row = await app_conn.fetchrow("SELECT delivered_at, delivered_to FROM reports")
    assert row["delivered_at"] is not None
    assert row["delivered_to"] == ["plant-management@example.com"]

    # The same step again (a redelivery after a crash before its commit) sends nothing.
    again = await deliver(rendered, make_ctx("deliver", run_id, attempt=2, pipeline="reports"))
    assert again["sent"] is False
    assert len(smtp_sink.messages) == 1


async def test_collect_refuses_a_bad_period_or_zone(
    make_ctx: Callable[..., Any], handler_env: dict[str, str]
) -> None:
    ctx = make_ctx("collect", pipeline="reports")
    with pytest.raises(Fail, match="period must be"):
        await collect({"period": "soon"}, ctx)
    with pytest.raises(Fail, match="unknown time zone 'Mars/Olympus'"):
        await collect({"period": "today", "timezone": "Mars/Olympus"}, ctx)


async def test_render_and_deliver_need_a_collected_report(
    make_ctx: Callable[..., Any], handler_env: dict[str, str]
) -> None:
    payload = {"day": "2026-03-02", "timezone": "UTC"}
    with pytest.raises(Fail, match="no report for 2026-03-02"):
        await render(payload, make_ctx("render", pipeline="reports"))
    with pytest.raises(Fail, match="does not name a report"):
        await deliver({"day": "someday"}, make_ctx("deliver", pipeline="reports"))
