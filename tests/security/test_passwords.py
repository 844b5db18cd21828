"""Passwords in DSNs never appear in logs, errors or `status` output.

Every command that connects is run with a password in its DSN (in the URL, percent-encoded,
as a query parameter, through DATABASE_URL), against a server that is not there and against
a real one; the password must not appear in anything it prints. Workers log it nowhere, under
a supervisor either, not even when a handler's own error message carries a DSN.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from orchestrator.db import connect, redact
from tests.badinput.support import clean_env, cli, closed_port, main, write_project

SECRET = "Hunter2-s3cret"


def with_password(dsn: str, password: str = SECRET, user: str = "postgres") -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc.rpartition('@')[2]}"))


def unreachable() -> list[str]:
    port = closed_port()
    return [
        f"postgresql://app:{SECRET}@127.0.0.1:{port}/app",
        f"postgres://app:{SECRET}@127.0.0.1:{port}/app?sslmode=disable",
        f"postgresql://app:{SECRET}%40x@127.0.0.1:{port}/app",
        f"postgresql://app@127.0.0.1:{port}/app?password={SECRET}",
        f"postgresql://app:{SECRET}@127.0.0.1:{port},127.0.0.1:{port}/app",
    ]


COMMANDS = [
    ("status",),
    ("status", "--json"),
    ("plan",),
    ("apply",),
    ("send", "orders", "{}"),
    ("trace", "00000000-0000-0000-0000-000000000001"),
    ("dlq", "list", "orders"),
    ("dlq", "replay", "orders", "--all"),
    ("maintain",),
    ("install",),
    ("queue", "list"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_errors_hide_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    monkeypatch.chdir(write_project(tmp_path))
    for dsn in unreachable():
        result = main(*command, "--dsn", dsn)
        assert result.code == 3, result.text
        assert SECRET not in result.text, result.text
        monkeypatch.setenv("DATABASE_URL", dsn)
        from_env = main(*command)
        monkeypatch.delenv("DATABASE_URL")
        assert from_env.code == 3, from_env.text
        assert SECRET not in from_env.text, from_env.text


def test_run_hides_the_password_when_the_database_is_gone(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    for dsn in unreachable()[:2]:
        result = cli("run", "--dsn", dsn, cwd=root)
        assert result.code == 3, result.text
        assert SECRET not in result.text
        supervised = cli("run", "--workers", "2", cwd=root, env=clean_env(DATABASE_URL=dsn))
        assert supervised.code == 3, supervised.text
        assert SECRET not in supervised.text


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql://u:{SECRET}@db.example:5432/app",
        f"postgres://u:{SECRET}@db/app and postgresql://v:{SECRET}@other/app",
        f"postgresql://:{SECRET}@db/app",
        f"postgresql://u@db/app?sslmode=require&password={SECRET}",
        f"host=db user=u password={SECRET} dbname=app",
        f"host=db password='{SECRET} with spaces' dbname=app",
        f"PASSWORD = {SECRET}",
    ],
)
def test_redact(text: str) -> None:
    assert SECRET not in redact(text)
    assert "db" in redact(text) or "PASSWORD" in redact(text)


FAILING = """\
pipeline: leaky
steps:
  connect:
    handler: handlers.leaky:connect
    retry: {max_attempts: 2, initial: 50ms, jitter: false}
"""

LEAKY = f"""\
async def connect(payload, ctx):
    raise ConnectionError("cannot reach postgresql://sap:{SECRET}@erp.example/prod")
"""


async def test_workers_and_status_hide_passwords(dsn: str, tmp_path: Path) -> None:
    """Against a real database (the password is ignored by its local trust auth): status,
    run and run --workers 2 print nothing of it, even when a handler's error names a DSN."""
    from orchestrator.compiler import apply
    from orchestrator.spec import load_pipelines_or_raise

    root = write_project(tmp_path, {"leaky": FAILING})
    (root / "handlers" / "leaky.py").write_text(LEAKY)
    owner = await connect(dsn)
    try:
        await apply(owner, load_pipelines_or_raise(root / "pipelines"))
    finally:
        await owner.close()
    secret_dsn = with_password(dsn)
    for n in range(3):
        sent = await asyncio.to_thread(cli, "send", "leaky", f'{{"n": {n}}}', "--dsn", secret_dsn)
        assert sent.code == 0 and SECRET not in sent.text
    ran = await asyncio.to_thread(cli, "run", "--drain", "--dsn", secret_dsn, cwd=root)
    assert ran.code == 0, ran.text
    assert "ConnectionError" in ran.text  # the handler's failures were logged...
    assert SECRET not in ran.text  # ...without the password
    supervised = await asyncio.to_thread(
        cli, "run", "--drain", "--workers", "2", cwd=root, env=clean_env(DATABASE_URL=secret_dsn)
    )
    assert supervised.code == 0, supervised.text
    assert SECRET not in supervised.text
    for command in (("status",), ("status", "--json")):
        shown = await asyncio.to_thread(cli, *command, "--dsn", secret_dsn, cwd=root)
        assert shown.code == 0, shown.text
        assert SECRET not in shown.text, command
