"""Handlers of the `reports` pipeline (pipelines/reports.yaml): the daily work-order report.

    collect -> render -> deliver

The schedule starts a run every morning with ``{"period": "yesterday", "timezone": ...}``;
``period`` may also be ``"today"`` or a date ``"YYYY-MM-DD"`` (to rebuild an old report by hand:
``orchestrator send reports '{"period": "2025-11-24"}'``). ``timezone`` defaults to
ORCHESTRATOR_REPORT_TIMEZONE, then UTC; a day is midnight to midnight in that zone.

`collect` stores the day's figures in `reports` (one row per day and zone; collecting again
replaces it), `render` adds the text and a CSV per plant, `deliver` mails them and records the
delivery. The payload between the steps only names the report.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from orchestrator import Fail, StepContext
from pipelines.handlers import config, mail
from pipelines.handlers.sql import connection, query

OPEN_LISTED = 20


def report_day(period: object, timezone: str, now: datetime | None = None) -> date:
    """The calendar day `period` names ("today", "yesterday" or YYYY-MM-DD) in `timezone`."""
    today = (now or datetime.now(ZoneInfo(timezone))).astimezone(ZoneInfo(timezone)).date()
    if period in (None, "yesterday"):
        return today - timedelta(days=1)
    if period == "today":
        return today
    if isinstance(period, str):
        try:
            return date.fromisoformat(period)
        except ValueError:
            pass
    raise ValueError(f"period must be 'today', 'yesterday' or YYYY-MM-DD, got {period!r}")


def _report_key(payload: dict[str, Any]) -> tuple[date, str]:
    try:
        return date.fromisoformat(payload["day"]), str(payload["timezone"])
    except (KeyError, TypeError, ValueError):
        raise Fail(
            f"payload does not name a report (day, timezone): {str(payload)[:200]}"
        ) from None


async def _report(conn: asyncpg.Connection, day: date, zone: str) -> asyncpg.Record:
    row = await conn.fetchrow(query("get_report"), day, zone)
    if row is None:
        raise Fail(f"no report for {day} ({zone}) in the reports table")
    return row


async def collect(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Aggregate the work orders imported on the report's day into `reports`."""
    conn = connection(ctx)
    try:
        settings = config.report()
        zone = config.timezone_name(payload.get("timezone") or settings.timezone, "timezone")
        day = report_day(payload.get("period"), zone)
    except (config.SettingsError, ValueError) as exc:
        raise Fail(str(exc)) from None
    bounds = await conn.fetchrow(query("day_bounds"), day, zone)
    starts, ends = bounds["starts"], bounds["ends"]
    totals = await conn.fetchrow(query("day_totals"), starts, ends)
    plants = await conn.fetch(query("day_by_plant"), starts, ends)
    still_open = await conn.fetch(query("day_open_orders"), starts, ends, OPEN_LISTED)
    figures = {
        "day": day.isoformat(),
        "timezone": zone,
        "totals": {k: int(v) for k, v in totals.items()},
        "plants": [{k: (int(v) if k != "plant" else v) for k, v in p.items()} for p in plants],
        "open": [dict(r) for r in still_open],
    }
    await conn.execute(query("save_report_figures"), day, zone, figures, str(ctx.run_id))
    ctx.logger.info("report %s (%s): %s", day, zone, figures["totals"])
    return {"day": day.isoformat(), "timezone": zone}


def render_text(figures: dict[str, Any]) -> tuple[str, str]:
    """(subject, body) of a report from its figures."""
    t = figures["totals"]
    day, zone = figures["day"], figures["timezone"]
    subject = f"Work orders {day}: {t['imported']} imported, {t['completed']} completed"
    lines = [
        f"Work orders imported on {day} ({zone})",
        "",
        f"  imported   {t['imported']:>7}   (quantity {t['quantity']})",
        f"  labelled   {t['labelled']:>7}",
        f"  in SAP     {t['synced']:>7}",
        f"  notified   {t['notified']:>7}",
        f"  completed  {t['completed']:>7}",
        f"  open       {t['imported'] - t['completed']:>7}",
        "",
        f"  {'plant':<10} {'orders':>7} {'quantity':>9} {'completed':>10} {'not in SAP':>11}",
    ]
    for p in figures["plants"]:
        lines.append(
            f"  {p['plant']:<10} {p['orders']:>7} {p['quantity']:>9} {p['completed']:>10} "
            f"{p['not_in_sap']:>11}"
        )
    if figures["open"]:
        lines += ["", f"Open work orders (first {OPEN_LISTED}):"]
        for o in figures["open"]:
            missing = [
                what for what, ok in (("SAP", o["in_sap"]), ("mail", o["notified"])) if not ok
            ]
            lines.append(
                f"  {o['work_order_no']:<16} {o['plant']:<8} {o['status']:<10} "
                f"missing: {', '.join(missing) or '-'}"
            )
    return subject, "\n".join(lines) + "\n"


def render_csv(figures: dict[str, Any]) -> str:
    """The per-plant figures as CSV."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["day", "plant", "orders", "quantity", "completed", "not_in_sap"])
    for p in figures["plants"]:
        writer.writerow(
            [
                figures["day"],
                p["plant"],
                p["orders"],
                p["quantity"],
                p["completed"],
                p["not_in_sap"],
            ]
        )
    return out.getvalue()


async def render(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Write the report's text and CSV attachment into `reports`."""
    conn = connection(ctx)
    day, zone = _report_key(payload)
    row = await _report(conn, day, zone)
    _, body = render_text(row["figures"])
    await conn.execute(query("save_report_text"), day, zone, body, render_csv(row["figures"]))
    return {"day": day.isoformat(), "timezone": zone}


async def deliver(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Mail the rendered report to ORCHESTRATOR_REPORT_TO (else ORCHESTRATOR_SMTP_TO)."""
    conn = connection(ctx)
    day, zone = _report_key(payload)
    try:
        smtp, settings = config.smtp(), config.report()
    except config.SettingsError as exc:
        raise Fail(f"configuration: {exc}") from None
    if not settings.recipients:
        raise Fail("no report recipients: set ORCHESTRATOR_REPORT_TO or ORCHESTRATOR_SMTP_TO")
    row = await _report(conn, day, zone)
    if row["body"] is None:
        raise Fail(f"report {day} ({zone}) has not been rendered")
    msg_id = mail.message_id(ctx.idempotency_key, smtp.sender)
    result = {"day": day.isoformat(), "timezone": zone, "message_id": msg_id}
    if await conn.fetchrow(query("get_notification"), msg_id) is not None:
        return {**result, "sent": False}
    subject, _ = render_text(row["figures"])
    message = mail.build(
        sender=smtp.sender,
        recipients=settings.recipients,
        subject=subject,
        body=row["body"],
        msg_id=msg_id,
        attachments=[(f"work-orders-{day}.csv", "text/csv", row["attachment_csv"] or "")],
    )
    try:
        await mail.send_async(smtp, message)
    except mail.MailRejected as exc:
        raise Fail(f"report {day}: {exc}") from None
    recipients = list(settings.recipients)
    await conn.execute(
        query("save_notification"),
        msg_id,
        "report",
        None,
        day,
        str(ctx.run_id),
        recipients,
        subject,
    )
    await conn.execute(query("mark_report_delivered"), day, zone, recipients)
    return {**result, "sent": True}
