"""Structured logging and the metrics collector, without a database."""

from __future__ import annotations

import io
import json
import logging

from prometheus_client import CollectorRegistry, generate_latest

from orchestrator.observe.logging import JsonFormatter, TextFormatter, configure, step_logger
from orchestrator.observe.metrics import QueueCollector


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("orchestrator.test", logging.INFO, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_context_and_hide_passwords() -> None:
    line = JsonFormatter().format(
        _record("connect postgresql://app:secret@db/x failed", run_id="r1", step="barcode")
    )
    data = json.loads(line)
    assert data["msg"] == "connect postgresql://app:***@db/x failed"
    assert data["run_id"] == "r1" and data["step"] == "barcode"
    assert data["level"] == "info"


def test_text_lines_name_pipeline_and_step() -> None:
    line = TextFormatter().format(_record("done", pipeline="wo", step="email", run_id="r9"))
    assert "wo/email" in line and "run_id=r9" in line and line.endswith("done")


def test_step_logger_through_configured_handler() -> None:
    stream = io.StringIO()
    configure("INFO", json_output=True, stream=stream)
    step_logger("orchestrator.x", pipeline="wo", step="import", run_id="abc").info("hello")
    last = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert last == {**last, "msg": "hello", "pipeline": "wo", "step": "import", "run_id": "abc"}


def test_queue_collector_maps_queues_to_steps() -> None:
    rows = [
        {
            "queue_name": "wo__import",
            "queue_length": 5,
            "queue_visible_length": 3,
            "in_flight": 2,
            "oldest_msg_age_sec": 7,
        },
        {
            "queue_name": "wo_dlq",
            "queue_length": 4,
            "queue_visible_length": 4,
            "in_flight": 0,
            "oldest_msg_age_sec": 1,
        },
        {
            "queue_name": "someone_elses",
            "queue_length": 99,
            "queue_visible_length": 99,
            "in_flight": 0,
            "oldest_msg_age_sec": 1,
        },
    ]
    owners = {"wo__import": ("wo", "import"), "wo_dlq": ("wo", "")}
    registry = CollectorRegistry()
    registry.register(QueueCollector(lambda: rows, owners.get))
    text = generate_latest(registry).decode()
    assert 'orchestrator_step_depth{pipeline="wo",step="import"} 5.0' in text
    assert 'orchestrator_step_in_flight{pipeline="wo",step="import"} 2.0' in text
    assert 'orchestrator_dlq_depth{pipeline="wo"} 4.0' in text
    assert "someone_elses" not in text
    assert "orchestrator_build_info{" in text
