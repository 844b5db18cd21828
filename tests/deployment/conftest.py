"""Deployments as production runs them: behind PgBouncer in transaction mode, as a
non-superuser database owner, over TLS with a verified certificate."""

from __future__ import annotations

from typing import Any

from tests.support.pgbouncer import pgbouncer, pooled_dsn, report_skipped
from tests.support.tls import tls_server

__all__ = ["pgbouncer", "pooled_dsn", "tls_server"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    report_skipped(terminalreporter)
