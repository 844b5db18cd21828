"""The SAP stand-in over real HTTP: answers, deduplication by key, failure injection."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from pipelines.standins.sap import SapServer


@pytest.fixture
def sap() -> Iterator[SapServer]:
    with SapServer(failure_rate=0.0, reject_rate=0.0, seed=3) as server:
        yield server


def post(url: str, body: bytes, key: str | None = None) -> tuple[int, dict[str, Any], bool]:
    headers = {"Content-Type": "application/json", **({"Idempotency-Key": key} if key else {})}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            replayed = response.headers.get("Idempotent-Replayed") == "true"
            return response.status, json.loads(response.read()), replayed
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read()), False


def order(number: str) -> bytes:
    return json.dumps({"work_order_no": number, "quantity": 1}).encode()


def test_new_order_then_replay_then_update(sap: SapServer) -> None:
    created = post(sap.url, order("WO-1"), "k1")
    assert created[0] == 201 and created[2] is False
    assert post(sap.url, order("WO-1"), "k1") == (201, created[1], True)
    updated = post(sap.url, order("WO-1"), "k2")
    assert updated[0] == 200 and updated[1]["sap_order"] == created[1]["sap_order"]
    assert post(sap.url, order("WO-2"), "k3")[1]["sap_order"] != created[1]["sap_order"]
    stats = sap.state.stats()
    assert stats["orders"] == 2 and stats["replayed"] == 1
    assert stats["by_status"] == {"201": 3, "200": 1}


def test_bad_requests(sap: SapServer) -> None:
    assert post(sap.url, b"not json", "k")[0] == 400
    assert post(sap.url, json.dumps({"quantity": 1}).encode(), "k")[0] == 400
    assert post(sap.url.replace("workorders", "nothing"), order("WO-1"))[0] == 404


def test_failure_rate_is_a_share_of_requests(sap: SapServer) -> None:
    sap.state.failure_rate = 0.5
    statuses = [post(sap.url, order(f"WO-{n}"), f"k{n}")[0] for n in range(200)]
    assert 50 < statuses.count(503) < 150
    assert set(statuses) == {201, 503}


def test_stats_and_stored_orders_over_http(sap: SapServer) -> None:
    post(sap.url, order("WO-9"), "k9")
    base = sap.url.rsplit("/", 1)[0]
    with urllib.request.urlopen(f"{base}/stats", timeout=5) as response:
        assert json.loads(response.read())["orders"] == 1
    with urllib.request.urlopen(f"{sap.url}/WO-9", timeout=5) as response:
        assert json.loads(response.read())["work_order_no"] == "WO-9"


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_SAP_FAILURE_RATE", "0.3")
    monkeypatch.setenv("ORCHESTRATOR_SAP_REJECT_RATE", "0")
    server = SapServer()
    try:
        assert (server.state.failure_rate, server.state.reject_rate) == (0.3, 0.0)
    finally:
        server.server_close()
    monkeypatch.setenv("ORCHESTRATOR_SAP_FAILURE_RATE", "lots")
    with pytest.raises(ValueError, match="ORCHESTRATOR_SAP_FAILURE_RATE must be a number"):
        SapServer()
