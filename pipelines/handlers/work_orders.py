"""Handlers of the `work_orders` pipeline (pipelines/work_orders.yaml).

    import -> barcode -> sap_sync ─┐
                      └> email ────┴> report

One run per work order: whoever has a CSV file starts one run per row, inside its own
transaction (`pipelines.handlers.csv_import.start_csv_import`, which the demo uses; see there
why). The entry payload is ``{"row": {column: value}, "source": file name, "line": n}``.

Every handler writes through `ctx.conn`, the connection of the step's hand-off transaction, so
its rows commit together with the acknowledgement of its message and the messages of the next
steps, or not at all. Each step writes its own table, so the concurrent `sap_sync` and `email`
steps of a run never wait on each other's row locks.

Re-importing a work order is idempotent: `import` upserts by work-order number and reports
whether anything changed; for an unchanged order already in SAP, `sap_sync` does not post it
again, and `email` does not mail the planner again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg

from orchestrator import Fail, Retry, StepContext
from pipelines.handlers import config, mail, sap_client
from pipelines.handlers.barcodes import SYMBOLOGY, LabelError, code128_svg
from pipelines.handlers.csv_import import RowError, WorkOrder, parse_row
from pipelines.handlers.sql import connection, query

_T = TypeVar("_T")
UNCHANGED = "unchanged"
MAX_RETRY_AFTER = 3600.0
"""A Retry-After longer than this (seconds) is capped: the order should not wait for days."""


def _number(payload: dict[str, Any]) -> str:
    number = payload.get("work_order_no") if isinstance(payload, dict) else None
    if not isinstance(number, str) or not number:
        raise Fail(f"payload has no work_order_no: {str(payload)[:200]}")
    return number


async def _work_order(conn: asyncpg.Connection, number: str) -> asyncpg.Record:
    row = await conn.fetchrow(query("get_work_order"), number)
    if row is None:
        raise Fail(f"work order {number} is not in the work_orders table")
    return row


def _text_or_none(value: object) -> str | None:
    return value[:200] if isinstance(value, str) else None


def _line_or_none(value: object) -> int | None:
    return value if type(value) is int and 0 < value < 2**31 else None


def _settings_or_fail(read: Callable[[], _T]) -> _T:
    try:
        return read()
    except config.SettingsError as exc:
        raise Fail(f"configuration: {exc}") from None


async def import_row(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Upsert one CSV row into `work_orders`; a row with a bad value fails permanently."""
    conn = connection(ctx)
    where = f"{payload.get('source', '?')}:{payload.get('line', '?')}"
    try:
        order: WorkOrder = parse_row(payload.get("row"))
    except RowError as exc:
        raise Fail(f"{where}: {exc}") from None
    inserted = await conn.fetchval(
        query("upsert_work_order"),
        order.work_order_no,
        order.material,
        order.description,
        order.quantity,
        order.unit,
        order.plant,
        order.due_date,
        order.planner_email,
        _text_or_none(payload.get("source")),
        _line_or_none(payload.get("line")),
        str(ctx.run_id),
    )
    change = UNCHANGED if inserted is None else ("inserted" if inserted else "updated")
    ctx.logger.info("work order %s from %s: %s", order.work_order_no, where, change)
    return {"work_order_no": order.work_order_no, "change": change}


async def generate_barcode(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Render the work order's Code 128 label as SVG and store it in `barcodes`."""
    conn = connection(ctx)
    number = _number(payload)
    await _work_order(conn, number)
    try:
        svg = code128_svg(number)
    except LabelError as exc:
        raise Fail(str(exc)) from None
    await conn.execute(query("save_barcode"), number, SYMBOLOGY, number, svg)
    return {"work_order_no": number, "change": payload.get("change"), "barcode": SYMBOLOGY}


async def sync_to_sap(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """POST the work order to SAP; record SAP's order number in `sap_sync`.

    SAP unavailable (5xx, timeout, connection refused): the exception propagates and the step's
    retry policy schedules another attempt with the same idempotency key (at the time SAP's
    Retry-After asks for, when it sends one). SAP refusing the order (4xx): `Fail`, the message
    goes to the dead-letter queue at once.
    """
    conn = connection(ctx)
    number = _number(payload)
    if payload.get("change") == UNCHANGED:
        known = await conn.fetchrow(query("get_sap_sync"), number)
        if known is not None:
            return {"work_order_no": number, "sap_order": known["sap_order"], "posted": False}
    settings = _settings_or_fail(config.sap)
    order = await _work_order(conn, number)
    document = {
        "work_order_no": number,
        "material": order["material"],
        "description": order["description"],
        "quantity": order["quantity"],
        "unit": order["unit"],
        "plant": order["plant"],
        "due_date": order["due_date"].isoformat(),
        "barcode": {"symbology": SYMBOLOGY, "code": number},
    }
    try:
        answer = await sap_client.push(settings, document, ctx.idempotency_key)
    except sap_client.SapRejected as exc:
        raise Fail(f"work order {number}: {exc}") from None
    except sap_client.SapUnavailable as exc:
        if exc.retry_after is None:
            raise
        raise Retry(after=min(exc.retry_after, MAX_RETRY_AFTER), reason=str(exc)) from None
    await conn.execute(
        query("save_sap_sync"),
        number,
        answer.sap_order,
        answer.status,
        answer.replayed,
        ctx.attempt,
        ctx.idempotency_key,
        str(ctx.run_id),
    )
    ctx.logger.info("work order %s is SAP order %s", number, answer.sap_order)
    return {"work_order_no": number, "sap_order": answer.sap_order, "posted": True}


def _work_order_mail(order: asyncpg.Record) -> tuple[str, str]:
    subject = (
        f"Work order {order['work_order_no']} ready: {order['quantity']} {order['unit']} "
        f"{order['material']} at plant {order['plant']}"
    )
    body = "\n".join(
        [
            f"Work order {order['work_order_no']} has been imported and labelled.",
            "",
            f"  Material     {order['material']}",
            f"  Description  {order['description']}",
            f"  Quantity     {order['quantity']} {order['unit']}",
            f"  Plant        {order['plant']}",
            f"  Due          {order['due_date'].isoformat()}",
            "",
            "The barcode label is attached (SVG, Code 128).",
        ]
    )
    return subject, body


async def notify(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Mail the planner that the work order is ready, with its barcode label attached."""
    conn = connection(ctx)
    number = _number(payload)
    settings = _settings_or_fail(config.smtp)
    msg_id = mail.message_id(ctx.idempotency_key, settings.sender)
    if await conn.fetchrow(query("get_notification"), msg_id) is not None:
        return {"work_order_no": number, "message_id": msg_id, "sent": False}
    if payload.get("change") == UNCHANGED:
        earlier = await conn.fetchrow(query("last_work_order_notification"), number)
        if earlier is not None:
            return {"work_order_no": number, "message_id": earlier["message_id"], "sent": False}
    order = await _work_order(conn, number)
    recipients = (order["planner_email"],) if order["planner_email"] else settings.recipients
    if not recipients:
        raise Fail(f"work order {number} has no planner_email and ORCHESTRATOR_SMTP_TO is empty")
    label = await conn.fetchrow(query("get_barcode"), number)
    subject, body = _work_order_mail(order)
    attachments = [(f"{number}.svg", "image/svg+xml", label["svg"])] if label else []
    message = mail.build(
        sender=settings.sender,
        recipients=recipients,
        subject=subject,
        body=body,
        msg_id=msg_id,
        attachments=attachments,
    )
    try:
        refused = await mail.send_async(settings, message)
    except mail.MailRejected as exc:
        raise Fail(f"work order {number}: {exc}") from None
    if refused:
        ctx.logger.warning("work order %s: recipients refused: %s", number, refused)
    await conn.execute(
        query("save_notification"),
        msg_id,
        "work_order",
        number,
        None,
        str(ctx.run_id),
        list(recipients),
        subject,
    )
    return {"work_order_no": number, "message_id": msg_id, "sent": True}


async def report(payload: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Join of `sap_sync` and `email`: both are done, so the work order is completed."""
    conn = connection(ctx)
    parts = [payload.get(step) for step in ("sap_sync", "email")]
    numbers = {p.get("work_order_no") for p in parts if isinstance(p, dict)}
    if len(numbers) != 1:
        raise Fail(f"join payload does not name one work order: {str(payload)[:200]}")
    number = _number({"work_order_no": numbers.pop()})
    done = await conn.fetchrow(query("complete_work_order"), number)
    if done is None:
        raise Fail(f"work order {number} is not in the work_orders table")
    sap, email = parts
    return {
        "work_order_no": number,
        "sap_order": sap.get("sap_order") if isinstance(sap, dict) else None,
        "mailed": bool(isinstance(email, dict) and email.get("message_id")),
        "completed_at": done["completed_at"].isoformat(),
    }
