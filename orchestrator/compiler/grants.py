"""Least privilege for workers: what a role running `orchestrator run` may do, and no more.

The role gets USAGE on schemas pgmq, pgmq_ext and orchestrator (CREATE on them is revoked),
EXECUTE on their functions, read/write on the tables of the pipelines' queues (with their
partitions and sequences), on ``orchestrator.joins`` and ``orchestrator.schedules``, and read
access to the metadata tables. It cannot create tables, touch other queues or other schemas.

Partition maintenance creates tables, so it runs with the role that applies (`orchestrator
maintain`), not with the worker role. Partitions created later are reached through their
parent table, which is all the worker needs; `apply --grant` again covers them explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.compiler.render import IDENTIFIER_PATTERN, render
from orchestrator.db.named_sql import named_queries
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    import asyncpg

ROLE_RULE = "lowercase letters, digits and underscores, starting with a letter or '_', 1-63"
_ROLE = re.compile(IDENTIFIER_PATTERN)


class InvalidRole(ConfigError):
    """A role name that is malformed, reserved or unknown."""


@dataclass(frozen=True)
class GrantResult:
    """What a role was granted: on how many queues, tables and sequences, by which SQL."""

    role: str
    queues: int
    tables: int
    sequences: int
    sql: str

    def message(self) -> str:
        """One line for people."""
        return (
            f"Granted role {self.role} what `orchestrator run` needs on {self.queues} queues "
            f"({self.tables} tables, {self.sequences} sequences); it cannot create objects."
        )


def check_role(role: str) -> str:
    """`role` unchanged when it is a plain, non-reserved role name; raises `InvalidRole`."""
    if not isinstance(role, str) or not _ROLE.match(role):
        raise InvalidRole(f"invalid role name {role!r}: use {ROLE_RULE} characters")
    if role.startswith("pg_"):
        raise InvalidRole(f"role name {role!r}: names starting with pg_ are reserved by PostgreSQL")
    return role


async def ensure_role(conn: asyncpg.Connection, role: str) -> str:
    """`role` when it is valid and exists; raises `InvalidRole` otherwise."""
    check_role(role)
    if not await conn.fetchval(named_queries("orchestrator.compiler")["role_exists"], role):
        raise InvalidRole(
            f"role {role} does not exist; create it first (CREATE ROLE {role} LOGIN PASSWORD ...)"
        )
    return role


Relation = tuple[str, str]
"""(schema, name) of a table or sequence."""


async def queue_relations(
    conn: asyncpg.Connection, queues: Iterable[str]
) -> tuple[list[Relation], list[Relation]]:
    """Tables (queue, archive, partitions) and sequences of `queues`, as they exist now."""
    rows = await conn.fetch(
        named_queries("orchestrator.compiler")["queue_relations"], sorted(set(queues))
    )
    tables = [(r["schema"], r["name"]) for r in rows if r["kind"] == "table"]
    sequences = [(r["schema"], r["name"]) for r in rows if r["kind"] == "sequence"]
    return tables, sequences


async def grant_worker(conn: asyncpg.Connection, role: str, queues: Iterable[str]) -> GrantResult:
    """Grant `role` what running the pipelines with `queues` needs (the role must exist)."""
    await ensure_role(conn, role)
    names = sorted(set(queues))
    tables, sequences = await queue_relations(conn, names)
    sql = render("grant_worker", role=role, tables=tables, sequences=sequences)
    await conn.execute(sql)
    return GrantResult(role, len(names), len(tables), len(sequences), sql)
