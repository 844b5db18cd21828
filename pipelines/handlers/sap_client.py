"""The SAP side of the work-order pipeline: one HTTP POST per work order.

The request carries an ``Idempotency-Key`` header (the step's idempotency key, the same on every
attempt of the step), so SAP, or the gateway in front of it, can recognise a retry of a request
it already executed and answer it without creating a second order.

Outcomes:
- 2xx: the work order is in SAP; the answer names the SAP order number.
- 408, 425, 429, 5xx, a timeout or a connection error: `SapUnavailable` (transient; the step's
  retry policy tries again later, or when SAP's Retry-After header says).
- any other status: `SapRejected` (permanent; retrying the same request cannot succeed).

urllib blocks, so `post_work_order` runs in a thread (`asyncio.to_thread`), bounded by the
configured timeout, which is shorter than the step's timeout.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from pipelines.handlers.config import SapSettings

MAX_BODY = 64 * 1024
TRANSIENT_STATUSES = frozenset({408, 425, 429})


class SapUnavailable(Exception):
    """SAP could not take the request now; trying again later may succeed.

    `retry_after`: seconds SAP asked the client to wait (its Retry-After header), if any.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SapRejected(Exception):
    """SAP refused the request; the same request will be refused again."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"SAP rejected the work order: HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class SapAnswer:
    status: int
    sap_order: str
    replayed: bool


def _detail(body: bytes) -> str:
    """The error text of an answer: its JSON `error`/`message`, else the body's start."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:200] or "(empty answer)"
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])[:200]
    return text[:200]


def _retry_after(value: str | None) -> float | None:
    """Seconds of a Retry-After header (delay-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _request(settings: SapSettings, document: dict[str, Any], key: str) -> urllib.request.Request:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Idempotency-Key": key,
        "User-Agent": "orchestrator-work-orders/1",
    }
    if settings.token:
        headers["Authorization"] = f"Bearer {settings.token}"
    body = json.dumps(document).encode()
    return urllib.request.Request(settings.url, data=body, headers=headers, method="POST")


def _answer(status: int, body: bytes, replayed: bool) -> SapAnswer:
    try:
        data = json.loads(body)
        sap_order = str(data["sap_order"])
    except (ValueError, KeyError, TypeError):
        # A 2xx without the order number: SAP's state is unknown, so ask again (same key).
        raise SapUnavailable(f"SAP answered {status} without an order number") from None
    return SapAnswer(status, sap_order, replayed)


def post_work_order(settings: SapSettings, document: dict[str, Any], key: str) -> SapAnswer:
    """POST `document` to SAP (blocking); raises SapUnavailable or SapRejected."""
    request = _request(settings, document, key)
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout) as response:
            replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
            return _answer(response.status, response.read(MAX_BODY), replayed)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(MAX_BODY)
        exc.close()
        if status >= 500 or status in TRANSIENT_STATUSES:
            wait = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            message = f"SAP answered HTTP {status}: {_detail(body)}"
            raise SapUnavailable(message, wait) from None
        raise SapRejected(status, _detail(body)) from None
    except urllib.error.URLError as exc:
        raise SapUnavailable(f"SAP not reachable at {settings.url}: {exc.reason}") from None
    except TimeoutError:
        raise SapUnavailable(f"SAP did not answer within {settings.timeout:g}s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise SapUnavailable(f"SAP connection failed: {type(exc).__name__}: {exc}") from None


async def push(settings: SapSettings, document: dict[str, Any], key: str) -> SapAnswer:
    """`post_work_order` in a worker thread, so the event loop keeps serving other messages."""
    return await asyncio.to_thread(post_work_order, settings, document, key)
