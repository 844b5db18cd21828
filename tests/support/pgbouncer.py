"""PgBouncer (Debian's `pgbouncer`) in front of the test server, in transaction mode.

One PgBouncer per test session, on a free port, started by the `pgbouncer` fixture and stopped
at the end. Every database of the test server is reachable through it under its own name
(``* = ...``), logging in to the server as the test server's user (``auth_type = any``), so
`pooled_dsn` is the test's fresh database behind a transaction pooler. Without the package the
tests that need it are skipped and the session ends with a line saying so.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
MISSING = (
    "pgbouncer is not installed (apt-get install pgbouncer): the tests through a "
    "transaction pooler did NOT run"
)
SKIPPED: list[str] = []
"""Set when a test was skipped for want of pgbouncer (reported at the end of the session)."""

CONFIG = """\
[databases]
* = {server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = {pool_mode}
max_client_conn = 1000
default_pool_size = 20
reserve_pool_size = 5
server_login_retry = 1
logfile = {folder}/pgbouncer.log
pidfile = {folder}/pgbouncer.pid
{extra}"""


def executable() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Upstream:
    """Where the test server is, as PgBouncer's connection string wants it."""

    host: str
    port: int
    user: str
    password: str

    @classmethod
    def of(cls, dsn: str) -> Upstream:
        parts = urlsplit(dsn)
        query = dict(parse_qsl(parts.query))
        host = query.get("host") or parts.hostname or "127.0.0.1"
        return cls(
            host=host,
            port=int(query.get("port") or parts.port or 5432),
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
        )

    def server(self) -> str:
        password = f" password={self.password}" if self.password else ""
        return f"host={self.host} port={self.port} user={self.user}{password}"

    def socket_owner(self) -> str:
        """The user PgBouncer runs as when started by root: one that can reach a socket
        folder (the embedded server's pgdata), else nobody."""
        if self.host.startswith("/"):
            return pwd.getpwuid(os.stat(self.host).st_uid).pw_name
        return "nobody"


@dataclass
class PgBouncer:
    """A running PgBouncer in front of the test server."""

    port: int
    process: subprocess.Popen[bytes]
    folder: Path

    def dsn(self, database: str, **params: str) -> str:
        """URL of `database` through the pooler (`params` become query parameters)."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}" + (
            f"?{query}" if query else ""
        )

    def behind(self, dsn: str, **params: str) -> str:
        """URL of the database of `dsn` (a test server URL) through the pooler."""
        return self.dsn(urlsplit(dsn).path.lstrip("/"), **params)

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    server_dsn: str, folder: Path, *, pool_mode: str = "transaction", extra: str = ""
) -> PgBouncer:
    """Start PgBouncer in front of `server_dsn` (`extra`: more [pgbouncer] settings); waits
    until it listens. Files in `folder` are made readable by the user PgBouncer runs as."""
    binary = executable()
    assert binary is not None
    upstream = Upstream.of(server_dsn)
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ini = folder / "pgbouncer.ini"
    config = CONFIG.format(
        server=upstream.server(), port=port, folder=folder, pool_mode=pool_mode, extra=extra
    )
    ini.write_text(config)
    command = [binary, str(ini)]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        user = upstream.socket_owner()
        record = pwd.getpwnam(user)
        for path in (folder, *folder.iterdir()):
            os.chown(path, record.pw_uid, record.pw_gid)
        command = [binary, "-u", user, str(ini)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    bouncer = PgBouncer(port, process, folder)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {process.returncode}:\n{bouncer.log()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return bouncer
        except OSError:
            time.sleep(0.1)
    bouncer.stop()
    raise RuntimeError(f"pgbouncer did not listen on port {port} within 30s:\n{bouncer.log()}")


@pytest.fixture(scope="session")
def pgbouncer(pg_server: dict[str, object]) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the test server, for the whole session."""
    if executable() is None:
        SKIPPED.append(MISSING)
        pytest.skip(MISSING)
    folder = ROOT / ".orchestrator" / f"pgbouncer-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    bouncer = start(str(pg_server["dsn"]), folder)
    try:
        yield bouncer
    finally:
        bouncer.stop()
        if not os.environ.get("KEEP_PGBOUNCER"):
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pooled_dsn(dsn: str, pgbouncer: PgBouncer) -> str:
    """The test's fresh database (queue layer installed) through PgBouncer; the pool mode is
    left for the first connection to find out."""
    return pgbouncer.behind(dsn)


def pgbouncer_state(bouncer: PgBouncer) -> str:
    """For a failure message: whether PgBouncer still runs, and the end of its log."""
    state = "running" if bouncer.process.poll() is None else f"exited {bouncer.process.returncode}"
    return f"\n--- pgbouncer {state}; its log ends:\n{bouncer.log()[-2000:]}"


def report_skipped(terminalreporter: object) -> None:
    """A loud line at the end of the session when pgbouncer was missing."""
    if SKIPPED:  # several conftests report it: say it once
        write = terminalreporter.write_line  # type: ignore[attr-defined]
        write(f"WARNING: {SKIPPED[0]}", red=True, bold=True)
        SKIPPED.clear()
