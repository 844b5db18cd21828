"""A known password in 24 shapes of DSN, through every command and every argument position.

Shapes: URLs (percent-encoded, unescaped `@`, query parameter, several hosts, IPv6, a socket
folder, no user, no database, a port that is not a number, upper-case scheme, trailing text, a
newline), libpq key=value strings (quoted, escaped, spaces around `=`, password first, a bad
port), and things that are no DSN at all (the password alone). Positions: `--dsn` before the
command, after it, as `--dsn=...`, in ORCHESTRATOR_DSN, in DATABASE_URL, and pasted where a
command or an argument was expected. Whatever the command answers, the password is never on
stdout or stderr, and no traceback either.

The whole matrix runs through `main()` in this process (thousands of runs); one subprocess of
the installed `orchestrator` per shape runs the position the bug was reported in (the DSN
before the command).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.badinput.support import clean_env, closed_port, main, write_project

SECRET = "Hunter2-s3cret"
PORT = closed_port()
HOST = f"127.0.0.1:{PORT}"
# An unreachable database without a password, for the positions that put the DSN elsewhere.
NOWHERE = f"postgresql://nobody@127.0.0.1:{PORT}/nothing"

SHAPES = {
    "url": f"postgresql://app:{SECRET}@{HOST}/app",
    "postgres-scheme": f"postgres://app:{SECRET}@{HOST}/app?sslmode=disable",
    "percent-encoded": f"postgresql://app:{SECRET}%40x%2Fy@{HOST}/app",
    "unescaped-at": f"postgresql://app:{SECRET}@Pass99@{HOST}/app",
    "unescaped-at-no-host": f"postgresql://u:{SECRET}@Pass99@/db",
    "query-password": f"postgresql://app@{HOST}/app?password={SECRET}",
    "query-password-second": f"postgresql://app@{HOST}/app?sslmode=disable&password={SECRET}",
    "several-hosts": f"postgresql://app:{SECRET}@{HOST},127.0.0.1:{PORT}/app",
    "ipv6": f"postgresql://app:{SECRET}@[::1]:{PORT}/app",
    "socket-folder": f"postgresql://app:{SECRET}@/app?host=/nonexistent-socket-dir",
    "no-user": f"postgresql://:{SECRET}@{HOST}/app",
    "no-database": f"postgresql://app:{SECRET}@{HOST}",
    "port-not-a-number": f"postgresql://app:{SECRET}@127.0.0.1:fivefour/app",
    "upper-case-scheme": f"POSTGRESQL://app:{SECRET}@{HOST}/app",
    "trailing-text": f"postgresql://app:{SECRET}@{HOST}/app extra words",
    "newline": f"postgresql://app:{SECRET}@{HOST}/app\n",
    "no-host-only-password": f"postgresql://app:{SECRET}",
    "kv": f"host=127.0.0.1 port={PORT} user=app password={SECRET} dbname=app",
    "kv-quoted": f"host=127.0.0.1 port={PORT} password='{SECRET} with space' dbname=app",
    "kv-escaped-quote": f"host=127.0.0.1 port={PORT} password='{SECRET}\\'q' dbname=app",
    "kv-spaces-around": f"host = 127.0.0.1 port = {PORT} password = {SECRET} dbname = app",
    "kv-password-first": f"password={SECRET} host=127.0.0.1 port={PORT} dbname=app",
    "kv-bad-port": f"host=127.0.0.1 port=abc password={SECRET} dbname=app",
    "password-alone": SECRET,
}

RUN_ID = "00000000-0000-0000-0000-000000000001"
# Every command with the arguments it needs to get as far as the database.
COMMANDS: list[tuple[str, ...]] = [
    ("validate",),
    ("schema",),
    ("graph", "orders"),
    ("plan",),
    ("apply",),
    ("send", "orders", "{}"),
    ("status",),
    ("status", "--json"),
    ("dlq", "list", "orders"),
    ("dlq", "show", "orders", "1"),
    ("dlq", "replay", "orders", "--all"),
    ("dlq", "purge", "orders", "--yes"),
    ("trace", RUN_ID),
    ("maintain",),
    ("install",),
    ("queue", "list"),
    ("queue", "create", "jobs"),
    ("queue", "drop", "jobs"),
    ("queue", "purge", "jobs"),
    ("queue", "metrics"),
    ("db", "status"),
    ("completion", "bash"),
    ("--version",),
]
POSITIONS = ("before", "after", "equals", "ORCHESTRATOR_DSN", "DATABASE_URL", "as-command")


def arguments(command: tuple[str, ...], dsn: str, position: str) -> list[str]:
    if position == "before":
        return ["--dsn", dsn, *command]
    if position == "after":
        return [*command, "--dsn", dsn]
    if position == "equals":
        return [*command, f"--dsn={dsn}"]
    if position == "as-command":
        return [dsn, *command]
    return list(command)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = write_project(tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "home"))  # no embedded server here
    for name in ("DATABASE_URL", "ORCHESTRATOR_DSN"):
        monkeypatch.delenv(name, raising=False)
    yield root


def _visible(text: str) -> bool:
    return SECRET in text or SECRET.replace("-", "%2D") in text


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_no_command_and_no_position_shows_the_password(
    project: Path, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    dsn = SHAPES[shape]
    for command in COMMANDS:
        for position in POSITIONS:
            if position in ("ORCHESTRATOR_DSN", "DATABASE_URL"):
                monkeypatch.setenv(position, dsn)
            else:
                monkeypatch.setenv("DATABASE_URL", NOWHERE)
            try:
                result = main(*arguments(command, dsn, position))
            finally:
                monkeypatch.delenv("DATABASE_URL", raising=False)
                monkeypatch.delenv("ORCHESTRATOR_DSN", raising=False)
            where = f"{' '.join(command)} ({position})"
            assert not _visible(result.text), f"{where} showed the password:\n{result.text}"
            assert "Traceback" not in result.text, f"{where}:\n{result.text}"


def _installed_cli() -> list[str]:
    script = Path(sys.executable).with_name("orchestrator")
    return [str(script)] if script.exists() else [sys.executable, "-m", "orchestrator"]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_installed_command_hides_it_before_the_command(tmp_path: Path, shape: str) -> None:
    root = write_project(tmp_path)
    env = clean_env(ORCHESTRATOR_HOME=str(tmp_path / "home"))
    env.pop("ORCHESTRATOR_DSN", None)
    done = subprocess.run(
        [*_installed_cli(), "--dsn", SHAPES[shape], "status"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
        env=env,
    )
    assert done.returncode in (1, 2, 3), (done.returncode, done.stderr)
    assert not _visible(done.stdout + done.stderr), done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("orchestrator: error: ")
    assert not (tmp_path / "home" / "pgdata").exists()  # no embedded server started
