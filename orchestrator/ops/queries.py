"""The named SQL of the operations layer (`sql/queries.sql`) and its error translation.

Errors the database raises for things a user can fix are translated here, at the boundary,
into the project's exceptions, so commands print one line instead of a traceback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from orchestrator.db.named_sql import named_queries
from orchestrator.errors import NotFound, OrchestratorError, SchemaMissing


def query(name: str) -> str:
    """The SQL of query `name` of ``ops/sql/queries.sql``."""
    return named_queries("orchestrator.ops")[name]


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
        raise OrchestratorError(f"database error: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
