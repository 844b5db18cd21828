"""Payload encoding, error history in headers, dead letters and the step context."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.runtime import StepContext
from orchestrator.runtime.handoff import (
    MAX_ERRORS_KEPT,
    MAX_PAYLOAD_BYTES,
    PayloadError,
    StepMessage,
    StepTarget,
    dead_letter_body,
    encode_object,
    error_record,
    with_error,
)
from orchestrator.spec import parse_pipeline


def test_encode_object_round_trips_and_refuses() -> None:
    assert encode_object({"a": [1, "b", None]}) == '{"a":[1,"b",null]}'
    with pytest.raises(PayloadError, match="not an array"):
        encode_object([1])
    with pytest.raises(PayloadError, match=r"output\['x'\]\[1\] contains a NUL"):
        encode_object({"x": ["ok", "bad\x00"]}, "output")
    # a backslash followed by the letters u0000 is not a NUL
    assert encode_object({"x": "\\u0000"}) == '{"x":"\\\\u0000"}'
    assert encode_object({"x": "\\" * 3 + "u0000"})
    with pytest.raises(PayloadError, match="NUL"):
        encode_object({"x": "\\\x00"})
    with pytest.raises(PayloadError, match="the limit is"):
        encode_object({"x": "y" * MAX_PAYLOAD_BYTES})


def test_errors_keep_the_latest() -> None:
    headers: dict[str, object] = {"run_id": "r"}
    for attempt in range(1, 9):
        headers = with_error(headers, error_record(attempt, ValueError(str(attempt))))
    errors = headers["errors"]
    assert isinstance(errors, list) and len(errors) == MAX_ERRORS_KEPT
    assert [e["attempt"] for e in errors] == [4, 5, 6, 7, 8]
    assert errors[-1]["type"] == "ValueError" and errors[-1]["message"] == "8"
    assert headers["run_id"] == "r"


def test_dead_letter_body_follows_the_contract() -> None:
    pipeline = parse_pipeline("pipeline: p\nsteps:\n  a: {handler: m:a}\n", Path("p.yaml"))
    target = StepTarget.of(pipeline, pipeline.step("a"))
    run = uuid.uuid4()
    message = StepMessage(7, 3, {"k": 1}, {"run_id": str(run)}, str(run))
    try:
        raise KeyError("gone\x00")
    except KeyError as exc:
        body = dead_letter_body(target, message, exc, permanent=False, headers={"h": 1})
    assert set(body) == {
        "pipeline",
        "step",
        "queue",
        "run_id",
        "msg_id",
        "payload",
        "headers",
        "attempts",
        "permanent",
        "error",
    }
    assert body["queue"] == "p__a" and body["attempts"] == 3 and body["msg_id"] == 7
    assert body["error"]["type"] == "KeyError"
    assert "\x00" not in body["error"]["message"] and "\x00" not in body["error"]["traceback"]
    assert "test_dead_letter_body_follows_the_contract" in body["error"]["traceback"]


def test_routes_name_successors_and_joins() -> None:
    pipeline = parse_pipeline(
        "pipeline: p\nsteps:\n"
        "  a: {handler: m:a, next: [b, c]}\n"
        "  b: {handler: m:b, delay: 5s}\n"
        "  c: {handler: m:c}\n"
        "  d: {handler: m:d, after: [b, c]}\n",
        Path("p.yaml"),
    )
    sender = f'"spec_hash":"{pipeline.spec_hash()}"'
    assert StepTarget.of(pipeline, pipeline.step("a")).routes == (
        f'[{{"step":"b","delay":5.0,"expects":null,{sender}}},'
        f'{{"step":"c","delay":0.0,"expects":null,{sender}}}]'
    )
    assert StepTarget.of(pipeline, pipeline.step("b")).routes == (
        f'[{{"step":"d","delay":0.0,"expects":["b","c"],{sender}}}]'
    )
    assert StepTarget.of(pipeline, pipeline.step("d")).routes == "[]"


def test_a_route_to_a_grouped_step_carries_the_key_path() -> None:
    pipeline = parse_pipeline(
        "pipeline: p\nsteps:\n  a: {handler: m:a, next: b}\n"
        "  b: {handler: m:b, group_by: customer.id}\n",
        Path("p.yaml"),
    )
    sender = f'"spec_hash":"{pipeline.spec_hash()}"'
    assert StepTarget.of(pipeline, pipeline.step("a")).routes == (
        f'[{{"step":"b","delay":0.0,"expects":null,{sender},"group":["customer","id"]}}]'
    )


def test_message_without_run_id_gets_one() -> None:
    message = StepMessage.from_row((1, 1, '{"a": 1}', None), "q")
    assert message.headers == {} and str(uuid.UUID(message.run_id)) == message.run_id
    assert StepMessage.from_row((1, 2, "{}", None), "q").run_id == message.run_id  # every attempt
    assert StepMessage.from_row((2, 1, "{}", None), "q").run_id != message.run_id
    bad = StepMessage.from_row((1, 1, "[1]", '{"run_id": "not-a-uuid"}'))
    assert bad.body == [1] and str(uuid.UUID(bad.run_id)) == bad.run_id
    shouted = str(uuid.uuid4()).upper()
    upper = StepMessage.from_row((1, 1, "{}", f'{{"run_id": "{shouted}"}}'))
    assert upper.run_id == upper.run_id.lower()


def test_step_context() -> None:
    run = uuid.uuid4()
    ctx = StepContext(
        run_id=str(run),
        pipeline="p",
        step="s",
        attempt=3,
        max_attempts=3,
        message_id=9,
        headers={},
        logger=lambda: logging.LoggerAdapter(logging.getLogger("t"), {"built": True}),
        deadline=(datetime.now(UTC) + timedelta(seconds=10)).timestamp(),
    )
    assert ctx.run_id == run
    assert ctx.logger.extra == {"built": True}
    assert ctx.deadline.tzinfo is UTC
    assert ctx.idempotency_key == f"{run}:s"
    assert ctx.is_last_attempt
    assert 9 < ctx.time_left <= 10
    assert not ctx.conn_used
    assert ctx.conn is None and ctx.conn_used
    assert "attempt=3/3" in repr(ctx)
