"""OpenTelemetry: one span per attempt, children of the run's trace, recorded with the SDK's
in-memory exporter over real consumers and a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator.observe import otel
from orchestrator.runtime import Fail, start
from tests.integration.runtime.conftest import Runtime

PIPE = """
pipeline: traced
defaults:
  retry: {max_attempts: 2, initial: 0s, jitter: false}
steps:
  first: {handler: t:first, next: second}
  second: {handler: t:second}
"""


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.configure(provider)
    try:
        yield provider, exporter
    finally:
        otel.reset()


async def test_every_attempt_is_a_span_in_the_run_s_trace(
    rt: Runtime, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    await rt.apply(PIPE)
    calls: dict[str, int] = {}

    async def second(payload: dict[str, Any], ctx: Any) -> None:
        calls["second"] = calls.get("second", 0) + 1
        if calls["second"] == 1:
            raise ValueError("first try fails")

    async def first(payload: dict[str, Any], ctx: Any) -> None:
        return None

    web = provider.get_tracer("web")
    with web.start_as_current_span("POST /orders") as request:
        traced_run = await start("traced", {"n": 1}, conn=rt.conn)
    plain_run = await start("traced", {"n": 2}, conn=rt.conn)

    async def done() -> bool:
        return await rt.count("traced__second", archive=True) == 2

    await rt.drain(
        rt.consumer("traced", "first", first), rt.consumer("traced", "second", second), until=done
    )
    attempts = [s for s in exporter.get_finished_spans() if s.name.startswith("traced.")]
    by_run: dict[str, list[Any]] = {}
    for span in attempts:
        by_run.setdefault(span.attributes["orchestrator.run_id"], []).append(span)
    assert sorted(len(v) for v in by_run.values()) == [2, 3]  # one retry of `second`
    request_context = request.get_span_context()
    for span in by_run[str(traced_run)]:
        assert span.context.trace_id == request_context.trace_id
        assert span.parent is not None and span.parent.span_id == request_context.span_id
    for span in by_run[str(plain_run)]:
        assert span.context.trace_id == plain_run.int  # trace id = run id
    outcomes = sorted(
        (
            s.attributes["orchestrator.step"],
            s.attributes["orchestrator.attempt"],
            s.attributes["orchestrator.outcome"],
        )
        for s in attempts
    )
    assert ("second", 1, "retry") in outcomes and ("second", 2, "done") in outcomes
    failed = next(s for s in attempts if s.attributes["orchestrator.outcome"] == "retry")
    assert failed.attributes["error.type"] == "ValueError"
    assert failed.attributes["orchestrator.pipeline"] == "traced"
    assert failed.attributes["orchestrator.retry_in"] == 0.0  # initial: 0s, no jitter
    assert not failed.status.is_ok


async def test_a_failed_attempt_s_span_says_retry_or_dead_letter(
    rt: Runtime, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    _, exporter = spans
    await rt.apply(PIPE)

    async def first(payload: dict[str, Any], ctx: Any) -> None:
        if payload["n"] == 1:
            raise KeyError("always fails")
        raise Fail("no retry can fix this")

    async def done() -> bool:
        return await rt.count("traced_dlq") == 2

    flaky = await start("traced", {"n": 1}, conn=rt.conn)
    hopeless = await start("traced", {"n": 2}, conn=rt.conn)
    await rt.drain(rt.consumer("traced", "first", first), until=done)
    seen = sorted(
        (
            s.attributes["orchestrator.run_id"],
            s.attributes["orchestrator.attempt"],
            s.attributes["orchestrator.outcome"],
            s.attributes.get("orchestrator.permanent"),
            s.attributes["error.type"],
        )
        for s in exporter.get_finished_spans()
        if s.name == "traced.first"
    )
    assert seen == sorted(
        [
            (str(flaky), 1, "retry", None, "KeyError"),
            (str(flaky), 2, "dead_letter", False, "KeyError"),
            (str(hopeless), 1, "dead_letter", True, "Fail"),
        ]
    )


def test_without_configuration_nothing_of_opentelemetry_is_imported() -> None:
    code = (
        "import sys, orchestrator.runtime.consumer, orchestrator.runtime.api\n"
        "from orchestrator.observe import otel\n"
        "parent = {'traceparent': '00-' + '1' * 32 + '-' + '2' * 16 + '-01'}\n"
        "span = otel.start_attempt('p', 's', 'r', 1, 1, parent)\n"
        "otel.end_attempt(span, None)\n"
        "assert otel.caller_headers({'a': 1}) == {'a': 1}\n"
        "print(span, sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "None []"
