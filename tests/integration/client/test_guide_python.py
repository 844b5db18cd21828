"""The Python examples of the PGMQ guide (`pgmq-guide.md`), run against our `PGMQueue`.

`guide_examples/*.py.txt` hold the guide's Python blocks verbatim (a test checks them against
the guide when the spec folder is beside the project). Each runs with one adaptation: its
import line names `orchestrator.queue` instead of `pgmq`. The connection URL comes from the
test database through `DATABASE_URL`, which the examples read. The examples' own
dependencies (the FastAPI worker's adapters, the consumer's `time.sleep` between polls) are
stood in for so their endless loops can be stopped once the queue is drained.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import re
import sys
import types
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from orchestrator.queue import PGMQueue

EXAMPLES = Path(__file__).parent / "guide_examples"
NAMES = ["producer", "consumer", "fastapi_worker", "batch_processing", "connection_pooling"]
GUIDE_CANDIDATES = [
    Path(__file__).resolve().parents[4] / "shared" / "spec" / "pgmq-guide.md",
    Path(__file__).resolve().parents[3] / "shared" / "spec" / "pgmq-guide.md",
]


def example(name: str) -> str:
    """The guide's example, adapted: only its import line changes."""
    source = (EXAMPLES / f"{name}.py.txt").read_text(encoding="utf-8")
    return source.replace("from pgmq import PGMQueue", "from orchestrator.queue import PGMQueue")


def run_example(name: str, module_name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": module_name}
    exec(compile(example(name), f"pgmq-guide.md ({name})", "exec"), namespace)
    return namespace


@pytest.fixture
def admin(dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[PGMQueue]:
    """DATABASE_URL pointing at the test database, and the guide's queues created."""
    monkeypatch.setenv("DATABASE_URL", dsn)
    with PGMQueue(database_url=dsn) as queue:
        for name in ("background_jobs", "email_notifications", "dlq"):
            queue.create(name)
        yield queue


def test_examples_are_the_guides() -> None:
    guide = next((path for path in GUIDE_CANDIDATES if path.exists()), None)
    if guide is None:
        pytest.skip("the spec folder (shared/spec/pgmq-guide.md) is not beside the project")
    blocks = re.findall(r"```python\n(.*?)```", guide.read_text(encoding="utf-8"), re.S)
    stored = [(EXAMPLES / f"{name}.py.txt").read_text(encoding="utf-8") for name in NAMES]
    assert blocks == stored


def test_producer_enqueues_jobs(admin: PGMQueue) -> None:
    producer = run_example("producer", "guide_producer")
    try:
        sap = producer["enqueue_sap_sync"](123)
        barcode = producer["enqueue_barcode_generation"](456)
        email = producer["enqueue_delayed_email"]("user@example.com", "Hello", "Body")
    finally:
        producer["queue"].close()
    jobs = admin.read("background_jobs", vt=30, qty=10)
    assert [(m["msg_id"], m["message"]) for m in jobs] == [
        (sap, {"job_type": "sap_sync", "entity": "work_order", "entity_id": 123}),
        (barcode, {"job_type": "barcode_generation", "work_order_id": 456}),
    ]
    # The email waits five minutes.
    assert admin.read("email_notifications") == []
    [row] = admin.fetch(
        "SELECT msg_id, message, extract(epoch FROM vt - enqueued_at) AS delay "
        "FROM pgmq.q_email_notifications"
    )
    assert row["msg_id"] == email
    assert row["message"] == {
        "job_type": "email_notification",
        "to": "user@example.com",
        "subject": "Hello",
        "body": "Body",
    }
    assert 299 <= float(row["delay"]) <= 301


class Idle(Exception):
    """Raised by the consumer's stand-in `time.sleep`: the queue has nothing visible left."""


def test_consumer_processes_jobs(admin: PGMQueue, capsys: pytest.CaptureFixture[str]) -> None:
    sap = admin.send(
        "background_jobs", {"job_type": "sap_sync", "entity": "work_order", "entity_id": 123}
    )
    barcode = admin.send("background_jobs", {"job_type": "barcode_generation", "work_order_id": 9})
    unknown = admin.send("background_jobs", {"job_type": "mystery"})
    retried = admin.send("background_jobs", {"job_type": "sap_sync"})  # no entity: fails
    exhausted = admin.send("background_jobs", {"job_type": "barcode_generation"})  # fails
    # `exhausted` has been read twice already; this read is its third attempt.
    admin.execute("UPDATE pgmq.q_background_jobs SET read_ct = 2 WHERE msg_id = $1", exhausted)

    consumer = run_example("consumer", "guide_consumer")
    consumer["time"] = types.SimpleNamespace(sleep=_stop_when_idle)
    try:
        with pytest.raises(Idle):
            consumer["worker"]()
    finally:
        consumer["queue"].close()

    out = capsys.readouterr().out
    assert "Worker started" in out
    assert "Synced work_order #123 to SAP" in out
    assert "Generated barcode for WO #9" in out
    assert "Unknown job type: mystery" in out
    for done in (sap, barcode, unknown):
        assert f"✓ Processed msg_id={done}" in out
    assert f"✗ Error processing msg_id={retried}: 'entity'" in out
    assert f"✗ Error processing msg_id={exhausted}: 'work_order_id'" in out
    assert f"→ Moved to DLQ: msg_id={exhausted}" in out
    assert f"→ Moved to DLQ: msg_id={retried}" not in out
    # The failed job waits for its vt to expire (the retry); the exhausted one is in the DLQ.
    [left] = admin.fetch("SELECT msg_id, read_ct FROM pgmq.q_background_jobs")
    assert (left["msg_id"], left["read_ct"]) == (retried, 1)
    assert [m["message"] for m in admin.read("dlq", vt=300, qty=100)] == [
        {"job_type": "barcode_generation"}
    ]


def _stop_when_idle(seconds: float) -> None:
    raise Idle


class Recorder:
    """Stand-in for the FastAPI worker's adapters: records calls, fails on request."""

    calls: list[tuple[str, Any]]

    async def sync_entity(self, entity_type: str, entity_id: int) -> None:
        self.calls.append(("sap", (entity_type, entity_id)))

    async def generate_barcode(self, work_order_id: int) -> None:
        self.calls.append(("barcode", work_order_id))

    async def send_email(self, to: str, subject: str, body: str) -> None:
        if to == "bounce@example.com":
            raise ConnectionError("mail server refused")
        self.calls.append(("email", to))


@pytest.fixture
def app_modules(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """The `app.infrastructure...` modules the FastAPI worker imports."""
    calls: list[tuple[str, Any]] = []
    adapters = {
        "app.infrastructure.sap.sap_adapter": "SAPAdapter",
        "app.infrastructure.barcode.barcode_service": "BarcodeService",
        "app.infrastructure.email.email_service": "EmailService",
    }
    for dotted, class_name in adapters.items():
        parts = dotted.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            if name not in sys.modules:
                monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        setattr(sys.modules[dotted], class_name, type(class_name, (Recorder,), {"calls": calls}))
    return calls


async def test_fastapi_worker_processes_jobs(
    admin: PGMQueue, app_modules: list[tuple[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    admin.send(
        "background_jobs", {"job_type": "sap_sync", "entity_type": "work_order", "entity_id": 5}
    )
    admin.send("background_jobs", {"job_type": "barcode_generation", "work_order_id": 6})
    email = {"job_type": "email_notification", "to": "a@example.com", "subject": "s", "body": "b"}
    admin.send("background_jobs", email)
    admin.send("background_jobs", {"job_type": "unheard_of"})
    bounce = admin.send("background_jobs", {**email, "to": "bounce@example.com"})
    admin.execute("UPDATE pgmq.q_background_jobs SET read_ct = 2 WHERE msg_id = $1", bounce)

    caplog.set_level(logging.INFO)
    module = run_example("fastapi_worker", "pgmq_worker")
    worker = module["PGMQWorker"]()
    task = asyncio.create_task(worker.process_queue("background_jobs"))
    try:
        async with asyncio.timeout(60):
            while admin.metrics("background_jobs").queue_length > 0:
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        worker.queue.close()

    assert sorted(app_modules, key=str) == [
        ("barcode", 6),
        ("email", "a@example.com"),
        ("sap", ("work_order", 5)),
    ]
    assert "Unknown job type: unheard_of" in caplog.text
    assert "✓ Processed sap_sync" in caplog.text
    assert f"→ DLQ: msg_id={bounce} after 3 retries" in caplog.text
    [dead] = admin.read("dlq", vt=300, qty=100)
    assert dead["message"]["to"] == "bounce@example.com"


async def test_batch_processing_snippet(admin: PGMQueue) -> None:
    admin.send_batch("background_jobs", [{"n": n} for n in range(12)])
    processed: list[Any] = []

    async def process_message(msg: Any) -> None:
        processed.append(msg["message"]["n"])
        admin.delete("background_jobs", msg["msg_id"])

    code = compile(
        example("batch_processing"),
        "pgmq-guide.md (batch_processing)",
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
    )
    namespace = {"queue": admin, "asyncio": asyncio, "process_message": process_message}
    pending = eval(code, namespace)
    if pending is not None:
        await pending
    assert processed == list(range(10))
    assert admin.metrics("background_jobs").queue_length == 2


def test_connection_pooling_snippet(dsn: str) -> None:
    # This snippet configures SQLAlchemy's pool; it involves no queue client.
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg2")
    namespace: dict[str, Any] = {
        "database_url": dsn.replace("postgresql://", "postgresql+psycopg2://")
    }
    exec(compile(example("connection_pooling"), "pgmq-guide.md (pooling)", "exec"), namespace)
    namespace["engine"].dispose()
