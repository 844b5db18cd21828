"""SAP sync against the stand-in: success, retryable failures, permanent refusals, replays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from orchestrator import Fail, Retry
from pipelines.handlers.sap_client import SapUnavailable
from pipelines.handlers.work_orders import import_row, sync_to_sap
from pipelines.standins.sap import SapServer, rejected

ROW = {
    "work_order_no": "WO-0000007",
    "material": "MAT-10077",
    "description": "Gear shaft 40 mm",
    "quantity": "40",
    "plant": "1100",
    "due_date": "2026-01-30",
}


async def _imported(make_ctx: Callable[..., Any], row: dict[str, str] = ROW) -> dict[str, Any]:
    return await import_row({"row": row, "source": "t.csv", "line": 2}, make_ctx("import"))


async def test_sync_posts_the_order_and_records_the_sap_number(
    app_conn: asyncpg.Connection,
    make_ctx: Callable[..., Any],
    handler_env: dict[str, str],
    sap_server: SapServer,
) -> None:
    payload = await _imported(make_ctx)
    ctx = make_ctx("sap_sync", attempt=2)
    out = await sync_to_sap(payload, ctx)
    assert out["posted"] is True
    stored = sap_server.state.orders["WO-0000007"]
    assert stored["quantity"] == 40 and stored["due_date"] == "2026-01-30"
    assert stored["barcode"] == {"symbology": "code128", "code": "WO-0000007"}
    row = await app_conn.fetchrow("SELECT * FROM sap_sync")
    assert row["sap_order"] == out["sap_order"] == stored["sap_order"]
    assert (row["http_status"], row["attempts"], row["replayed"]) == (201, 2, False)
    assert row["idempotency_key"] == ctx.idempotency_key
    assert [r.key for r in sap_server.state.received] == [ctx.idempotency_key]


async def test_a_retry_with_the_same_key_is_answered_from_the_first_request(
    app_conn: asyncpg.Connection,
    make_ctx: Callable[..., Any],
    handler_env: dict[str, str],
    sap_server: SapServer,
) -> None:
    payload = await _imported(make_ctx)
    first_ctx = make_ctx("sap_sync")
    first = await sync_to_sap(payload, first_ctx)
    retry_ctx = make_ctx("sap_sync", run_id=first_ctx.run_id, attempt=2)
    second = await sync_to_sap(payload, retry_ctx)
    assert second["sap_order"] == first["sap_order"]
    assert len(sap_server.state.orders) == 1
    assert await app_conn.fetchval("SELECT replayed FROM sap_sync") is True


async def test_sap_503_raises_a_retryable_error(
    app_conn: asyncpg.Connection,
    make_ctx: Callable[..., Any],
    handler_env: dict[str, str],
    sap_server: SapServer,
) -> None:
    sap_server.state.failure_rate = 1.0
    payload = await _imported(make_ctx)
    with pytest.raises(SapUnavailable, match="HTTP 503: SAP gateway temporarily unavailable"):
        await sync_to_sap(payload, make_ctx("sap_sync"))
    assert not isinstance(SapUnavailable("x"), Fail)
    assert await app_conn.fetchval("SELECT count(*) FROM sap_sync") == 0


async def test_sap_503_with_retry_after_asks_for_that_time(
    make_ctx: Callable[..., Any], handler_env: dict[str, str], sap_server: SapServer
) -> None:
    sap_server.state.failure_rate = 1.0
    sap_server.state.retry_after = 7
    payload = await _imported(make_ctx)
    with pytest.raises(Retry) as raised:
        await sync_to_sap(payload, make_ctx("sap_sync"))
    assert raised.value.delay() == 7.0
    assert "HTTP 503" in str(raised.value)


async def test_sap_422_fails_permanently(
    app_conn: asyncpg.Connection,
    make_ctx: Callable[..., Any],
    handler_env: dict[str, str],
    sap_server: SapServer,
) -> None:
    sap_server.state.reject_rate = 1.0
    payload = await _imported(make_ctx)
    with pytest.raises(Fail, match="HTTP 422: material master data missing"):
        await sync_to_sap(payload, make_ctx("sap_sync"))
    assert await app_conn.fetchval("SELECT count(*) FROM sap_sync") == 0


async def test_a_slow_sap_times_out_as_a_retryable_error(
    make_ctx: Callable[..., Any],
    handler_env: dict[str, str],
    sap_server: SapServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sap_server.state.latency = 2.0
    monkeypatch.setenv("ORCHESTRATOR_SAP_TIMEOUT", "0.3")
    payload = await _imported(make_ctx)
    with pytest.raises(SapUnavailable, match=r"within 0\.3s|timed out"):
        await sync_to_sap(payload, make_ctx("sap_sync"))


async def test_sap_not_listening_is_a_retryable_error(
    make_ctx: Callable[..., Any], handler_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = SapServer(failure_rate=0.0, reject_rate=0.0)
    url = closed.url
    closed.server_close()
    monkeypatch.setenv("ORCHESTRATOR_SAP_URL", url)
    payload = await _imported(make_ctx)
    with pytest.raises(SapUnavailable, match="not reachable"):
        await sync_to_sap(payload, make_ctx("sap_sync"))


@pytest.mark.parametrize(
    ("value", "message"),
    [(None, "ORCHESTRATOR_SAP_URL is not set"), ("ftp://sap", "must be an http")],
)
async def test_missing_or_bad_sap_url_fails_with_the_variable_name(
    make_ctx: Callable[..., Any],
    handler_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    value: str | None,
    message: str,
) -> None:
    if value is None:
        monkeypatch.delenv("ORCHESTRATOR_SAP_URL")
    else:
        monkeypatch.setenv("ORCHESTRATOR_SAP_URL", value)
    payload = await _imported(make_ctx)
    with pytest.raises(Fail, match=message):
        await sync_to_sap(payload, make_ctx("sap_sync"))


async def test_reimport_of_an_unchanged_order_does_not_post_again(
    make_ctx: Callable[..., Any], handler_env: dict[str, str], sap_server: SapServer
) -> None:
    await sync_to_sap(await _imported(make_ctx), make_ctx("sap_sync"))
    again = await _imported(make_ctx)
    assert again["change"] == "unchanged"
    out = await sync_to_sap(again, make_ctx("sap_sync"))
    assert out["posted"] is False
    assert len(sap_server.state.received) == 1


def test_the_stand_in_refuses_the_same_orders_every_time() -> None:
    numbers = [f"WO-{n:07d}" for n in range(1, 2001)]
    refused = [n for n in numbers if rejected(n, 0.01)]
    assert 5 <= len(refused) <= 40
    assert refused == [n for n in numbers if rejected(n, 0.01)]
    assert not any(rejected(n, 0.0) for n in numbers)
