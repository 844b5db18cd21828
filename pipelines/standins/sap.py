"""A local stand-in for the SAP endpoint work orders are posted to (for the demo and tests).

``POST /sap/workorders`` with a JSON work order and an ``Idempotency-Key`` header answers:

- 503 for a random share of requests (``failure_rate``, env ORCHESTRATOR_SAP_FAILURE_RATE,
  default 0.2): SAP is briefly unavailable, the worker retries;
- 400 for a body that is not a JSON object with a ``work_order_no``;
- the stored answer again, with ``Idempotent-Replayed: true``, for a key it has already
  executed (a retry whose first answer got lost);
- 422 for a fixed set of work orders (``reject_rate``, env ORCHESTRATOR_SAP_REJECT_RATE,
  default 0.01, chosen by a hash of the number, so the same orders are refused on every
  attempt and in every process): these runs end in the dead-letter queue;
- 201 with ``{"sap_order": ...}`` otherwise (200 when the work order was posted before under
  another key: SAP updates the order it has).

``latency`` (env ORCHESTRATOR_SAP_LATENCY, seconds) delays every answer, to try timeouts;
``state.retry_after`` (seconds) adds a Retry-After header to the 503 answers.
``GET /sap/stats`` returns the counters as JSON; ``GET /sap/workorders/<no>`` one stored order.

Run it alone with ``python -m pipelines.standins.sap [--port 8080]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATH = "/sap/workorders"
MAX_BODY = 1024 * 1024


def _env_number(name: str, default: float, high: float = 1.0) -> float:
    """A number from 0 to `high` read from the environment variable `name`."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= high:
        raise ValueError(f"{name} must be a number from 0 to {high:g}, got {raw!r}")
    return value


def _pick(given: float | None, name: str, default: float, high: float = 1.0) -> float:
    return _env_number(name, default, high) if given is None else given


def rejected(work_order_no: str, reject_rate: float) -> bool:
    """Whether the stand-in refuses this work order (the same answer every time)."""
    return zlib.crc32(work_order_no.encode()) % 10_000 < reject_rate * 10_000


@dataclass
class Received:
    """One request as the stand-in saw it."""

    key: str | None
    work_order_no: str | None
    status: int
    at: float


@dataclass
class SapState:
    """What the stand-in knows: orders, answers per idempotency key, and what it received."""

    failure_rate: float
    reject_rate: float
    latency: float
    rng: random.Random
    retry_after: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    next_number: int = 4_000_000_001

    def handle(self, key: str | None, body: bytes) -> tuple[int, dict[str, Any], bool]:
        """(status, JSON answer, replayed) for one POST."""
        with self.lock:
            status, answer, replayed, number = self._decide(key, body)
            self.received.append(Received(key, number, status, time.time()))
            self.counts[str(status)] += 1
            self.counts["replayed" if replayed else "requests"] += 1
            return status, answer, replayed

    def _decide(self, key: str | None, body: bytes) -> tuple[int, dict[str, Any], bool, str | None]:
        if self.rng.random() < self.failure_rate:
            return 503, {"error": "SAP gateway temporarily unavailable"}, False, None
        try:
            document = json.loads(body)
            number = document["work_order_no"]
            if not isinstance(number, str) or not number:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return 400, {"error": "a JSON object with a work_order_no is expected"}, False, None
        if key and key in self.answers:
            status, answer = self.answers[key]
            return status, answer, True, number
        if rejected(number, self.reject_rate):
            answer = {"error": f"material master data missing for work order {number}"}
            return 422, answer, False, number
        status = 200 if number in self.orders else 201
        sap_order = self.orders.get(number, {}).get("sap_order") or str(self.next_number)
        if status == 201:
            self.next_number += 1
        self.orders[number] = {**document, "sap_order": sap_order}
        answer = {"sap_order": sap_order, "work_order_no": number}
        if key:
            self.answers[key] = (status, answer)
        return status, answer, False, number

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "orders": len(self.orders),
                "keys": len(self.answers),
                "received": len(self.received),
                "by_status": {k: v for k, v in self.counts.items() if k.isdigit()},
                "replayed": self.counts["replayed"],
            }


class _Handler(BaseHTTPRequestHandler):
    server: SapServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep the terminal quiet
        return

    def _reply(self, status: int, answer: dict[str, Any], replayed: bool = False) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if replayed:
            self.send_header("Idempotent-Replayed", "true")
        if status == 503 and self.server.state.retry_after is not None:
            self.send_header("Retry-After", str(self.server.state.retry_after))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        state = self.server.state
        if self.path.rstrip("/") != PATH:
            self._reply(404, {"error": f"no such endpoint: POST {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply(413, {"error": "body too large"})
            return
        body = self.rfile.read(length)
        if state.latency:
            time.sleep(state.latency)
        status, answer, replayed = state.handle(self.headers.get("Idempotency-Key"), body)
        self._reply(status, answer, replayed)

    def do_GET(self) -> None:
        state = self.server.state
        if self.path.rstrip("/") == "/sap/stats":
            self._reply(200, state.stats())
            return
        prefix = PATH + "/"
        if self.path.startswith(prefix):
            with state.lock:
                order = state.orders.get(self.path[len(prefix) :])
            if order is not None:
                self._reply(200, order)
                return
        self._reply(404, {"error": HTTPStatus.NOT_FOUND.phrase})


class SapServer(ThreadingHTTPServer):
    """The stand-in's HTTP server; `start()` serves in a background thread."""

    daemon_threads = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        failure_rate: float | None = None,
        reject_rate: float | None = None,
        latency: float | None = None,
        seed: int | None = None,
    ) -> None:
        if seed is None and os.environ.get("ORCHESTRATOR_SAP_SEED", "").strip():
            seed = int(_env_number("ORCHESTRATOR_SAP_SEED", 0, high=2**32))
        self.state = SapState(
            failure_rate=_pick(failure_rate, "ORCHESTRATOR_SAP_FAILURE_RATE", 0.2),
            reject_rate=_pick(reject_rate, "ORCHESTRATOR_SAP_REJECT_RATE", 0.01),
            latency=_pick(latency, "ORCHESTRATOR_SAP_LATENCY", 0.0, high=3600.0),
            rng=random.Random(seed),
        )
        super().__init__((host, port), _Handler)  # after the settings: a bad one binds nothing
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The URL work orders are posted to (ORCHESTRATOR_SAP_URL for the workers)."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{PATH}"

    def start(self) -> SapServer:
        self._thread = threading.Thread(target=self.serve_forever, name="sap-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()

    def __enter__(self) -> SapServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    try:
        server = SapServer(args.host, args.port)
    except (OSError, ValueError) as exc:
        parser.exit(1, f"sap stand-in: error: {exc}\n")
    print(f"SAP stand-in listening on {server.url} (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print(json.dumps(server.state.stats()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
