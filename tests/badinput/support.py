"""Running the CLI as a user does, and checking what a refusal must look like.

A refusal is: the documented non-zero exit code, exactly one ``orchestrator: error: ...``
line on stderr (or, for pipeline files, one ``file:line:col: error: ...`` line per problem),
no traceback anywhere, and nothing written to the database (`DatabaseState` before and after).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

CLI = [sys.executable, "-m", "orchestrator"]

PIPELINE = """\
pipeline: orders
steps:
  receive:
    handler: handlers.orders:receive
    next: [ship]
  ship:
    handler: handlers.orders:ship
"""

HANDLERS = """\
async def receive(payload, ctx):
    return payload


async def ship(payload, ctx):
    return payload
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ORCHESTRATOR_WORKER")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def cli(
    *args: str,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> Result:
    """Run `orchestrator ARGS` to completion (a hang past `timeout` fails the test)."""
    try:
        done = subprocess.run(
            [*CLI, *args],
            cwd=cwd,
            env=env or clean_env(),
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"orchestrator {' '.join(args)} hung for {timeout}s") from None
    return Result(
        done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    )


def main(*args: str, stdin: bytes = b"") -> Result:
    """Run the CLI's `main` in this process (no interpreter start-up: for large corpora).

    Only for commands that end without starting workers. An exception escaping `main` would
    be a traceback for a user: it fails the test as it is.
    """
    import contextlib
    import io

    from orchestrator.cli import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    previous = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli_main(list(args))
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin = previous
    return Result(code, out.getvalue(), err.getvalue())


def assert_refused(result: Result, code: int, *fragments: str) -> str:
    """`result` is a one-line refusal with exit `code` mentioning every fragment; its line."""
    assert "Traceback" not in result.text, result.text
    assert result.code == code, f"exit {result.code}, wanted {code}:\n{result.text}"
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, f"wanted one line on stderr:\n{result.err}"
    (line,) = lines
    assert line.startswith(("orchestrator: error: ", "orchestrator ")), line
    assert "error: " in line, line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def write_project(root: Path, pipelines: dict[str, str] | None = None) -> Path:
    """A project folder with ``pipelines/`` and a ``handlers`` package; returns the root."""
    (root / "pipelines").mkdir(parents=True, exist_ok=True)
    for name, text in (pipelines or {"orders": PIPELINE}).items():
        (root / "pipelines" / f"{name}.yaml").write_text(text)
    (root / "handlers").mkdir(exist_ok=True)
    (root / "handlers" / "__init__.py").write_text("")
    (root / "handlers" / "orders.py").write_text(HANDLERS)
    return root


# -- the database before and after -------------------------------------------------------------

_RELATIONS = """
SELECT n.nspname || '.' || c.relname || ':' || c.relkind::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
   AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'
"""
_FUNCTIONS = """
SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
"""


@dataclass(frozen=True)
class DatabaseState:
    """What a refused command must leave as it was: objects, roles, rows, messages."""

    schemas: frozenset[str]
    relations: frozenset[str]
    functions: frozenset[str]
    triggers: frozenset[str]
    roles: frozenset[str]
    rows: tuple[tuple[str, int], ...]
    """Row counts of every ordinary table outside the system schemas (messages included)."""

    @classmethod
    async def of(cls, conn: asyncpg.Connection) -> DatabaseState:
        tables = await conn.fetch(
            "SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
            " ORDER BY 1"
        )
        rows = []
        for table in tables:
            count = await conn.fetchval(f"SELECT count(*) FROM {table['name']}")
            rows.append((table["name"], int(count)))
        return cls(
            schemas=frozenset(await _column(conn, "SELECT nspname FROM pg_namespace")),
            relations=frozenset(await _column(conn, _RELATIONS)),
            functions=frozenset(await _column(conn, _FUNCTIONS)),
            triggers=frozenset(
                await _column(conn, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
            ),
            roles=frozenset(await _column(conn, "SELECT rolname FROM pg_roles")),
            rows=tuple(rows),
        )

    @classmethod
    def read(cls, dsn: str) -> DatabaseState:
        """The state, from a synchronous test."""

        async def read() -> DatabaseState:
            conn = await asyncpg.connect(dsn)
            try:
                return await cls.of(conn)
            finally:
                await conn.close()

        return asyncio.run(read())

    def differences(self, other: DatabaseState) -> dict[str, Any]:
        found = {}
        for name in ("schemas", "relations", "functions", "triggers", "roles"):
            before, after = getattr(self, name), getattr(other, name)
            if before != after:
                found[name] = {"added": sorted(after - before), "removed": sorted(before - after)}
        if self.rows != other.rows:
            changed = dict(other.rows)
            found["rows"] = {
                t: (n, changed.get(t)) for t, n in self.rows if changed.get(t) != n
            } | {t: (None, n) for t, n in other.rows if t not in dict(self.rows)}
        return found


async def _column(conn: asyncpg.Connection, query: str) -> list[str]:
    return [row[0] for row in await conn.fetch(query)]


# -- servers that do not answer ----------------------------------------------------------------


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung or firewalled
    server: the handshake completes, the PostgreSQL startup never gets an answer)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for sock in accepted:
            sock.close()
        listener.close()


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lines_of(text: str) -> Sequence[str]:
    return [line for line in text.splitlines() if line.strip()]
