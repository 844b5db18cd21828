"""Temporary databases and temporary roles on the test server.

Databases and roles are created under random names and removed again however the test ends:
a database is dropped WITH (FORCE); a role first loses its sessions and everything it owns in
the databases it was used in, since roles are cluster-wide and outlive any one database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def with_database(dsn: str, database: str) -> str:
    """The same server URL pointed at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def with_login(dsn: str, role: str, password: str | None = None) -> str:
    """The same URL with another role (and password) to log in as."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    user = role if password is None else f"{role}:{password}"
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


async def admin_execute(admin_dsn: str, statement: str, *args: object) -> None:
    """Run one statement on its own admin connection."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(statement, *args)
    finally:
        await admin.close()


@asynccontextmanager
async def temporary_database(admin_dsn: str, template: str | None = None) -> AsyncIterator[str]:
    """The DSN of a new database (empty, or a copy of `template`), dropped on exit."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    await admin_execute(admin_dsn, f'CREATE DATABASE "{name}"{copy}')
    try:
        yield with_database(admin_dsn, name)
    finally:
        await admin_execute(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def temporary_role(
    admin_dsn: str,
    used_in: Sequence[str],
    *,
    prefix: str = "worker",
    password: str | None = None,
    login: bool = True,
) -> AsyncIterator[str]:
    """A new role (`LOGIN`, with `password` when given), removed on exit: its sessions are
    ended, what it owns in the databases `used_in` (DSNs) is dropped, then the role."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    options = " LOGIN" if login else ""
    if password is not None:
        options += f" PASSWORD '{password}'"
    await admin_execute(admin_dsn, f'CREATE ROLE "{name}"{options}')
    try:
        yield name
    finally:
        await admin_execute(
            admin_dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            name,
        )
        for dsn in used_in:
            await admin_execute(dsn, f'DROP OWNED BY "{name}"')
        await admin_execute(admin_dsn, f'DROP ROLE IF EXISTS "{name}"')
