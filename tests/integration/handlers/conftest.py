"""Fixtures for the work-order handlers: application tables, the stand-ins, a step context.

The handlers run against the real database of the `conn` fixture and talk to the real local
SAP stand-in and SMTP sink over TCP; nothing is mocked.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from orchestrator.runtime.context import StepContext
from pipelines.handlers.sql import create_tables
from pipelines.standins.sap import SapServer
from pipelines.standins.smtp import SmtpSink

PLANNING = "planning@example.com"


@pytest.fixture
async def app_conn(conn: asyncpg.Connection) -> asyncpg.Connection:
    """`conn` with the application tables created."""
    await create_tables(conn)
    return conn


@pytest.fixture
def sap_server() -> Iterator[SapServer]:
    """The SAP stand-in answering every request (no injected failures)."""
    with SapServer(failure_rate=0.0, reject_rate=0.0, seed=1) as server:
        yield server


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def handler_env(
    monkeypatch: pytest.MonkeyPatch, sap_server: SapServer, smtp_sink: SmtpSink
) -> dict[str, str]:
    """Environment pointing the handlers at the stand-ins."""
    env = {
        "ORCHESTRATOR_SAP_URL": sap_server.url,
        "ORCHESTRATOR_SAP_TIMEOUT": "5",
        "ORCHESTRATOR_SMTP_HOST": "127.0.0.1",
        "ORCHESTRATOR_SMTP_PORT": str(smtp_sink.port),
        "ORCHESTRATOR_SMTP_FROM": "orchestrator@example.com",
        "ORCHESTRATOR_SMTP_TO": PLANNING,
        "ORCHESTRATOR_REPORT_TO": "plant-management@example.com",
        "ORCHESTRATOR_REPORT_TIMEZONE": "UTC",
    }
    for name in ("ORCHESTRATOR_SMTP_USER", "ORCHESTRATOR_SMTP_STARTTLS", "ORCHESTRATOR_SAP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def make_ctx(app_conn: asyncpg.Connection) -> Callable[..., StepContext]:
    """make_ctx(step, run_id=None, attempt=1, pipeline="work_orders"): the runtime's
    StepContext for a handler called directly, with `app_conn` as its connection."""

    def make(
        step: str,
        run_id: uuid.UUID | None = None,
        attempt: int = 1,
        pipeline: str = "work_orders",
    ) -> StepContext:
        run_id = run_id or uuid.uuid4()
        return StepContext(
            run_id=run_id,
            pipeline=pipeline,
            step=step,
            attempt=attempt,
            max_attempts=5,
            message_id=1,
            headers={"run_id": str(run_id), "pipeline": pipeline, "step": step},
            logger=logging.LoggerAdapter(logging.getLogger(f"test.{pipeline}.{step}"), {}),
            deadline=datetime.now(UTC) + timedelta(seconds=30),
            conn=app_conn,
        )

    return make
