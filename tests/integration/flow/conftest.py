"""Flow-control tests: PgBouncer in transaction mode for the workers that reach PostgreSQL
through one (no LISTEN)."""

from __future__ import annotations

from typing import Any

from tests.support.pgbouncer import pgbouncer, report_skipped

__all__ = ["pgbouncer"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    report_skipped(terminalreporter)
