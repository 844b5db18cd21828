"""OpenTelemetry traces (the optional extra `orchestrator[otel]`): one span per attempt.

Nothing of OpenTelemetry is imported until it is configured: by the standard variables
(`OTEL_TRACES_EXPORTER`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
`OTEL_SERVICE_NAME`; `OTEL_SDK_DISABLED=true` turns it off), or by `configure(provider)` from a
program that sets up its own tracer provider (and tests with the SDK's in-memory exporter).
Without the extra installed, configuring it logs one warning and traces nothing.

Each attempt of a step is a span `<pipeline>.<step>` (kind CONSUMER) with the attributes
`orchestrator.pipeline`, `.step`, `.run_id`, `.attempt`, `.message_id` and `.outcome`:
`done`, or for a failed attempt (its error recorded, status ERROR) what follows it: `retry`
(with `orchestrator.retry_in`, the seconds until the next attempt), `dead_letter` (with
`orchestrator.permanent`: no retry could fix it), or `failed` when no decision was recorded
(the batch was given back, e.g. its lease was lost; the message comes back at its vt). A failed
attempt's span ends when the runtime has decided, so it says what happens next.

Its parent comes from the message's headers: `trace_origin`, the traceparent of the span that
was current when `orchestrator.start()` was called inside a traced program (so a web request and
the run it started are one trace across processes), else the message's own `traceparent` (trace
id = run id: one trace per run).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

_log = logging.getLogger(__name__)

_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
)

ORIGIN_HEADER = "trace_origin"
"""Header key with the traceparent of the caller of `start()`, inherited by every step."""

_UNSET: Any = object()
_tracer: Any = _UNSET


def configured_by_environment() -> bool:
    """True when the OTEL_* variables ask for traces."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(os.environ.get(name) for name in _VARIABLES)


def configure(provider: Any = None) -> None:
    """Trace attempts with `provider` (an OpenTelemetry TracerProvider); None stops tracing."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer("orchestrator")


def reset() -> None:
    """Forget the configuration: the environment is read again at the next attempt."""
    global _tracer
    _tracer = _UNSET


def tracer() -> Any:
    """The tracer of attempts, or None when tracing is off (nothing imported then)."""
    global _tracer
    if _tracer is _UNSET:
        _tracer = _from_environment() if configured_by_environment() else None
    return _tracer


def _from_environment() -> Any:
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        _log.warning(
            "OTEL_* is set but OpenTelemetry is not installed: pip install orchestrator[otel]"
        )
        return None
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # the program set one up itself
        return current.get_tracer("orchestrator")
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", "orchestrator")}
    )
    provider = TracerProvider(resource=resource)
    exporter = _exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider.get_tracer("orchestrator")


def _exporter() -> Any:
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower()
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        _log.warning("no OTLP exporter installed: pip install orchestrator[otel]")
        return None
    return OTLPSpanExporter()


def start_attempt(
    pipeline: str, step: str, run_id: str, attempt: int, message_id: int, headers: Any
) -> Any:
    """A started span for one attempt, or None when tracing is off."""
    found = tracer()
    if found is None:
        return None
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = headers if isinstance(headers, Mapping) else {}
    parent = carrier.get(ORIGIN_HEADER) or carrier.get("traceparent")
    context = (
        TraceContextTextMapPropagator().extract({"traceparent": parent})
        if isinstance(parent, str)
        else None
    )
    return found.start_span(
        f"{pipeline}.{step}",
        context=context,
        kind=SpanKind.CONSUMER,
        attributes={
            "orchestrator.pipeline": pipeline,
            "orchestrator.step": step,
            "orchestrator.run_id": run_id,
            "orchestrator.attempt": attempt,
            "orchestrator.message_id": message_id,
        },
    )


def end_attempt(
    span: Any,
    error: BaseException | None,
    *,
    retry_in: float | None = None,
    dead_letter: bool = False,
    permanent: bool = False,
) -> None:
    """End an attempt's span with its outcome: done (no `error`), else `dead_letter`, a retry
    in `retry_in` seconds, or neither (`failed`: no decision). No-op for None or a span that
    already ended."""
    if span is None or not span.is_recording():
        return
    from opentelemetry.trace import Status, StatusCode

    if error is None:
        span.set_attribute("orchestrator.outcome", "done")
    else:
        if dead_letter:
            span.set_attribute("orchestrator.outcome", "dead_letter")
            span.set_attribute("orchestrator.permanent", permanent)
        elif retry_in is not None:
            span.set_attribute("orchestrator.outcome", "retry")
            span.set_attribute("orchestrator.retry_in", retry_in)
        else:
            span.set_attribute("orchestrator.outcome", "failed")
        span.set_attribute("error.type", type(error).__name__)
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
    span.end()


def caller_headers(headers: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """`headers` plus the caller's current span as `trace_origin`, when the calling program
    traces with OpenTelemetry (already imported by it) and a span is current."""
    if "opentelemetry.trace" not in sys.modules or not isinstance(headers, Mapping | None):
        return headers
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not trace.get_current_span().get_span_context().is_valid:
        return headers
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    if "traceparent" not in carrier:
        return headers
    return {**(headers or {}), ORIGIN_HEADER: carrier["traceparent"]}
