"""The application's SQL, kept in `pipelines/sql/`: the tables and the named queries.

`schema.sql` creates the tables (idempotently); `queries.sql` holds the handlers' queries, each
under a `-- name: <name>` header, returned by `query(name)`.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from orchestrator import StepContext
from orchestrator.db.named_sql import named_queries

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def query(name: str) -> str:
    """The SQL of query `name` from queries.sql (KeyError names the unknown query)."""
    try:
        return named_queries("pipelines")[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in {SQL_DIR / 'queries.sql'}") from None


def schema_sql() -> str:
    return (SQL_DIR / "schema.sql").read_text(encoding="utf-8")


async def create_tables(conn: asyncpg.Connection) -> None:
    """Create the application tables unless they exist (safe to run again)."""
    await conn.execute(schema_sql())


async def clear_tables(conn: asyncpg.Connection) -> None:
    """Delete every row of the application tables (the demo's fresh start)."""
    await conn.execute("TRUNCATE work_orders, barcodes, sap_sync, notifications, reports")


def connection(ctx: StepContext) -> asyncpg.Connection:
    """The connection of the step's hand-off transaction (async handlers always get one)."""
    if ctx.conn is None:
        raise RuntimeError(
            f"step {ctx.pipeline}.{ctx.step} has no connection: use an async handler"
        )
    return ctx.conn
