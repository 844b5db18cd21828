"""The named SQL of the operations layer (`sql/queries.sql`) and the checks every command needs.

Errors the database raises for things a user can fix are translated here, at the boundary,
into the project's exceptions, so commands print one line instead of a traceback.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from importlib.resources import files

import asyncpg

from orchestrator.db import pooler_problem
from orchestrator.errors import NotFound, OrchestratorError, SchemaMissing

_QUERY_HEADER = re.compile(r"^-- name: ([a-z_]+)\n", re.M)


@cache
def queries() -> dict[str, str]:
    """Every named query of ``sql/queries.sql``."""
    text = (files("orchestrator.ops") / "sql" / "queries.sql").read_text(encoding="utf-8")
    parts = _QUERY_HEADER.split(text)[1:]
    return {name: body.strip() for name, body in zip(parts[::2], parts[1::2], strict=True)}


def query(name: str) -> str:
    """The SQL of query `name`."""
    return queries()[name]


async def ensure_prepared(conn: asyncpg.Connection) -> None:
    """Raise `SchemaMissing` unless the queue layer, schema orchestrator and the operations'
    functions are all in the database."""
    row = await conn.fetchrow(query("layers"))
    if not row["has_pgmq"] or not row["has_pipelines"]:
        raise SchemaMissing(
            "this database has no pipelines yet; run `orchestrator apply` to create them"
        )
    if not row["has_functions"]:
        raise SchemaMissing(
            "the orchestrator functions in this database are older than this version; "
            "run `orchestrator apply` to update them"
        )


@asynccontextmanager
async def translated_errors() -> AsyncIterator[None]:
    """Turn database errors a user can act on into one-line `OrchestratorError`s."""
    try:
        yield
    except asyncpg.UndefinedTableError as exc:
        raise NotFound(_first_line(exc)) from None
    except asyncpg.UndefinedFunctionError as exc:
        raise SchemaMissing(
            f"{_first_line(exc)}; run `orchestrator apply` to update the database"
        ) from None
    except asyncpg.PostgresError as exc:
        problem = pooler_problem(exc)
        if problem is not None:
            raise OrchestratorError(problem) from None
        raise OrchestratorError(f"database error: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
