"""Mail to the planner through the SMTP sink: content, idempotency, refusals."""

from __future__ import annotations

import asyncio
import smtplib
import socket
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from orchestrator import Fail
from pipelines.handlers.mail import MailTemporaryFailure
from pipelines.handlers.work_orders import generate_barcode, import_row, notify, report
from pipelines.standins.smtp import SmtpSink

PLANNING = "planning@example.com"  # ORCHESTRATOR_SMTP_TO of the handler_env fixture
ROW = {
    "work_order_no": "WO-0000011",
    "material": "MAT-20019",
    "description": "Cable harness X4",
    "quantity": "8",
    "unit": "SET",
    "plant": "2000",
    "due_date": "2026-02-10",
    "planner_email": "planner.lyon@example.com",
}


async def _labelled(make_ctx: Callable[..., Any], row: dict[str, str] = ROW) -> dict[str, Any]:
    imported = await import_row({"row": row, "source": "t.csv", "line": 2}, make_ctx("import"))
    return await generate_barcode(imported, make_ctx("barcode"))


async def test_the_planner_gets_a_mail_with_subject_and_label(
    app_conn: asyncpg.Connection,
    make_ctx: Callable[..., Any],
    handler_env: dict[str, str],
    smtp_sink: SmtpSink,
) -> None:
    ctx = make_ctx("email")
    out = await notify(await _labelled(make_ctx), ctx)
    assert out["sent"] is True
    [mail] = smtp_sink.wait_for(1)
    assert mail.rcpt_tos == ("planner.lyon@example.com",)
    assert mail.mail_from == "orchestrator@example.com"
    assert mail.subject == "Work order WO-0000011 ready: 8 SET MAT-20019 at plant 2000"
    message = mail.message
    assert message["Message-ID"] == out["message_id"]
    assert "Cable harness X4" in message.get_body(("plain",)).get_content()
    [label] = list(message.iter_attachments())
    assert label.get_filename() == "WO-0000011.svg"
    assert label.get_content_type() == "image/svg+xml"
    assert b"<svg" in label.get_content()
    row = await app_conn.fetchrow("SELECT * FROM notifications")
    assert (row["message_id"], row["kind"], row["work_order_no"]) == (
        out["message_id"],
        "work_order",
        "WO-0000011",
    )
    assert row["recipients"] == ["planner.lyon@example.com"]


async def test_without_a_planner_the_mail_goes_to_the_configured_address(
    make_ctx: Callable[..., Any], handler_env: dict[str, str], smtp_sink: SmtpSink
) -> None:
    row = {**ROW, "planner_email": ""}
    await notify(await _labelled(make_ctx, row), make_ctx("email"))
    [mail] = smtp_sink.wait_for(1)
    assert mail.rcpt_tos == (PLANNING,)


async def test_a_repeated_step_does_not_mail_twice(
    make_ctx: Callable[..., Any], handler_env: dict[str, str], smtp_sink: SmtpSink
) -> None:
    payload = await _labelled(make_ctx)
    ctx = make_ctx("email")
    await notify(payload, ctx)
    again = await notify(payload, make_ctx("email", run_id=ctx.run_id, attempt=2))
    assert again["sent"] is False
    # Re-importing an unchanged order: a new run, but the planner already knows it.
    reimported = await _labelled(make_ctx)
    assert reimported["change"] == "unchanged"
    assert (await notify(reimported, make_ctx("email")))["sent"] is False
    await asyncio.sleep(0.2)
    assert len(smtp_sink.messages) == 1


async def test_a_refused_recipient_fails_permanently(
    app_conn: asyncpg.Connection,
    make_ctx: Callable[..., Any],
    handler_env: dict[str, str],
    smtp_sink: SmtpSink,
) -> None:
    row = {**ROW, "planner_email": "bounce@example.com"}
    with pytest.raises(Fail, match="550"):
        await notify(await _labelled(make_ctx, row), make_ctx("email"))
    assert smtp_sink.messages == []
    assert await app_conn.fetchval("SELECT count(*) FROM notifications") == 0


async def test_a_deferred_recipient_is_retried(
    make_ctx: Callable[..., Any], handler_env: dict[str, str], smtp_sink: SmtpSink
) -> None:
    row = {**ROW, "planner_email": "defer@example.com"}
    with pytest.raises(MailTemporaryFailure, match="450"):
        await notify(await _labelled(make_ctx, row), make_ctx("email"))


async def test_an_smtp_server_that_does_not_answer_is_retried(
    make_ctx: Callable[..., Any], handler_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    monkeypatch.setenv("ORCHESTRATOR_SMTP_PORT", str(free_port))
    with pytest.raises(MailTemporaryFailure, match="ConnectionRefusedError"):
        await notify(await _labelled(make_ctx), make_ctx("email"))


async def test_missing_smtp_host_fails_with_the_variable_name(
    make_ctx: Callable[..., Any], handler_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORCHESTRATOR_SMTP_HOST")
    with pytest.raises(Fail, match="ORCHESTRATOR_SMTP_HOST is not set"):
        await notify(await _labelled(make_ctx), make_ctx("email"))


async def test_the_join_completes_the_work_order(
    app_conn: asyncpg.Connection, make_ctx: Callable[..., Any], handler_env: dict[str, str]
) -> None:
    await _labelled(make_ctx)
    joined = {
        "sap_sync": {"work_order_no": "WO-0000011", "sap_order": "4000000001", "posted": True},
        "email": {"work_order_no": "WO-0000011", "message_id": "<m@x>", "sent": True},
    }
    out = await report(joined, make_ctx("report"))
    assert out["sap_order"] == "4000000001" and out["mailed"] is True
    row = await app_conn.fetchrow("SELECT status, completed_at FROM work_orders")
    assert row["status"] == "completed" and row["completed_at"] is not None
    with pytest.raises(Fail, match="does not name one work order"):
        await report({"sap_sync": {"work_order_no": "A"}, "email": {}}, make_ctx("report"))


def test_sink_speaks_enough_smtp_for_smtplib_and_checks_the_order() -> None:
    with SmtpSink() as sink, smtplib.SMTP("127.0.0.1", sink.port, timeout=5) as client:
        assert client.ehlo()[0] == 250
        assert client.has_extn("8bitmime")
        assert client.rcpt("someone@example.com")[0] == 503  # RCPT before MAIL
        assert client.docmd("DATA")[0] == 503
        assert client.mail("a@example.com")[0] == 250
        assert client.mail("b@example.com")[0] == 503  # nested MAIL
        assert client.rcpt("x@example.com")[0] == 250
        assert client.rset()[0] == 250
        assert client.docmd("BOGUS")[0] == 500
        client.sendmail("a@example.com", ["x@example.com"], b"Subject: dots\r\n\r\n.leading\r\n")
        [mail] = sink.wait_for(1)
        assert mail.data.endswith(b".leading\r\n")  # the client's dot-stuffing undone
        assert mail.subject == "dots"
