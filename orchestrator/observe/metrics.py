"""Prometheus metrics for `orchestrator run --metrics-port P`.

Counters and the handler-duration histogram are updated by the workers. With `--workers N`
they live in N processes, so the supervisor calls `enable_multiprocess(dir)` before it starts
them (prometheus_client's multiprocess mode: each process writes its values to files in that
folder, the endpoint sums them). Queue gauges (depth, visible, oldest age, DLQ depth) are read
from PostgreSQL at scrape time through `pgmq.metrics_all()`, so they are right whichever
process serves them.
"""

from __future__ import annotations

import asyncio
import os
import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from orchestrator import __version__

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LABELS = ("pipeline", "step")


def enable_multiprocess(directory: str) -> None:
    """Make this process and the workers it starts share counters through `directory`."""
    os.makedirs(directory, exist_ok=True)
    os.environ[MULTIPROC_ENV] = directory


@dataclass(frozen=True)
class RuntimeMetrics:
    handoffs: Any
    failures: Any
    retries: Any
    dead_letters: Any
    lease_extensions: Any
    handler_seconds: Any


@cache
def runtime_metrics() -> RuntimeMetrics:
    """The process-wide metric objects (created on first use, after the env is set)."""
    from prometheus_client import Counter, Histogram

    def counter(name: str, doc: str) -> Any:
        return Counter(f"orchestrator_{name}", doc, LABELS)

    return RuntimeMetrics(
        handoffs=counter("handoffs_total", "Messages handed off to the next step(s)"),
        failures=counter("failures_total", "Handler attempts that failed"),
        retries=counter("retries_total", "Failed attempts scheduled for a retry"),
        dead_letters=counter("dead_letters_total", "Messages moved to the dead-letter queue"),
        lease_extensions=counter("lease_extensions_total", "Visibility leases extended"),
        handler_seconds=Histogram(
            "orchestrator_handler_duration_seconds",
            "Handler run time",
            LABELS,
            buckets=DURATION_BUCKETS,
        ),
    )


QueueRows = Callable[[], Iterable[dict[str, Any]]]


class QueueCollector:
    """Gauges read from `pgmq.metrics_all()` at scrape time; `queue_owner` maps a queue name to
    (pipeline, step) or None for queues that are not ours."""

    def __init__(self, fetch: QueueRows, queue_owner: Callable[[str], tuple[str, str] | None]):
        self._fetch = fetch
        self._owner = queue_owner

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        fams = {
            "queue_length": GaugeMetricFamily(
                "orchestrator_step_depth", "Messages in the step queue", labels=LABELS
            ),
            "queue_visible_length": GaugeMetricFamily(
                "orchestrator_step_visible", "Messages ready to be read", labels=LABELS
            ),
            "in_flight": GaugeMetricFamily(
                "orchestrator_step_in_flight", "Messages read and not yet visible", labels=LABELS
            ),
            "oldest_msg_age_sec": GaugeMetricFamily(
                "orchestrator_step_oldest_age_seconds", "Age of the oldest message", labels=LABELS
            ),
        }
        dlq = GaugeMetricFamily(
            "orchestrator_dlq_depth", "Messages in the dead-letter queue", labels=["pipeline"]
        )
        for row in self._fetch():
            owner = self._owner(row["queue_name"])
            if owner is None:
                continue
            pipeline, step = owner
            if step == "":
                dlq.add_metric([pipeline], float(row["queue_length"] or 0))
                continue
            for key, fam in fams.items():
                fam.add_metric([pipeline, step], float(row.get(key) or 0))
        yield from fams.values()
        yield dlq
        yield _build_info()


def _build_info() -> Any:
    from prometheus_client.core import GaugeMetricFamily

    fam = GaugeMetricFamily(
        "orchestrator_build_info", "Build information", labels=["version", "python"]
    )
    fam.add_metric([__version__, platform.python_version()], 1.0)
    return fam


def fetch_queue_rows(dsn: str) -> list[dict[str, Any]]:
    """One short connection per scrape (scrapes come every few seconds at most)."""
    from orchestrator.db import connect

    async def _fetch() -> list[dict[str, Any]]:
        conn = await connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT m.*, m.queue_length - m.queue_visible_length AS in_flight"
                " FROM pgmq.metrics_all() m"
            )
            return [dict(r) for r in rows]
        finally:
            await conn.close()

    try:
        return asyncio.run(_fetch())
    except Exception:  # a scrape must never take the worker down
        return []


def serve(port: int, collector: QueueCollector, host: str | None = None) -> Any:
    """Start the /metrics endpoint in a background thread; returns the server.

    It listens on `host`, else $ORCHESTRATOR_METRICS_HOST, else 127.0.0.1 (set 0.0.0.0 in a
    container so the scraper can reach it).
    """
    host = host or os.environ.get("ORCHESTRATOR_METRICS_HOST") or "127.0.0.1"
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    registry.register(collector)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
