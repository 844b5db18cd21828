"""`orchestrator --version`: this package's version, and the database's when it answers.

The database is asked only when one is configured (`--dsn`, `ORCHESTRATOR_DSN`, `DATABASE_URL`)
or the project's embedded server already runs: printing a version never starts a server.
"""

from __future__ import annotations

import asyncio

from orchestrator.errors import OrchestratorError

VERSION_TIMEOUT = 5.0


def version_lines(dsn: str | None) -> list[str]:
    """`orchestrator X.Y.Z`, then the queue layer's and the store's versions when reachable."""
    from orchestrator import __version__
    from orchestrator.queue import sqlfiles
    from orchestrator.store.install import VERSION as STORE_VERSION

    lines = [
        f"orchestrator {__version__} "
        f"(queue layer {sqlfiles.latest_version()}, store {STORE_VERSION})"
    ]
    target = _configured_database(dsn)
    if target is None:
        return [*lines, "database: none configured and the embedded server is not running"]
    try:
        queue, store = asyncio.run(_installed(target))
    except OrchestratorError as exc:
        return [*lines, f"database: {exc}"]
    return [*lines, f"database: queue layer {_said(queue)}, store {_said(store)}"]


def _said(version: int | None) -> str:
    return "not installed" if version is None else str(version)


def _configured_database(dsn: str | None) -> str | None:
    from orchestrator.db import embedded, resolve_dsn

    try:
        return resolve_dsn(dsn, start_embedded=False)
    except OrchestratorError:
        running = embedded.status()
        return running.uri if running.running else None


async def _installed(dsn: str) -> tuple[int | None, int | None]:
    from orchestrator.db import connect
    from orchestrator.state import read_layers

    conn = await connect(dsn, timeout=VERSION_TIMEOUT)
    try:
        layers = await read_layers(conn)
    finally:
        await conn.close()
    return layers.queue_version, layers.store_version
