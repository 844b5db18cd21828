"""`orchestrator apply --grant ROLE`, then workers that log in as that role.

The role gets what `run` needs and no more: the workers process the pipelines (a plain one
and a partitioned one), `send` works, and the role can neither create nor drop anything, nor
touch queues of other pipelines or schemas it was not given. Its password never shows up in
the workers' logs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.db import connect
from tests.badinput.support import cli, write_project
from tests.support.pg import temporary_role, with_login

PASSWORD = "Worker-Pa55word"

LEDGER = """
CREATE TABLE ledger (run_id text NOT NULL, step text NOT NULL, pipeline text NOT NULL)
"""

HANDLERS = """\
async def record(payload, ctx):
    await ctx.conn.execute(
        "INSERT INTO ledger (run_id, step, pipeline) VALUES ($1, $2, $3)",
        str(ctx.run_id), ctx.step, ctx.pipeline,
    )
    return payload
"""

ORDERS = """\
pipeline: orders
steps:
  receive: {handler: handlers.ledger:record, next: [ship]}
  ship: {handler: handlers.ledger:record}
"""

EVENTS = """\
pipeline: events
queues:
  partitioned: {interval: 1 day, retention: 7 days}
steps:
  ingest: {handler: handlers.ledger:record}
"""

REFUSED = [
    "CREATE TABLE public.evil (x int)",
    "CREATE TABLE pgmq.evil (x int)",
    "CREATE TABLE pgmq_ext.evil (x int)",
    "CREATE TABLE orchestrator.evil (x int)",
    "CREATE SCHEMA evil",
    "CREATE FUNCTION public.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE INDEX ON pgmq.q_orders__receive (vt)",
    "DROP TABLE pgmq.q_orders__receive",
    "ALTER TABLE pgmq.q_orders__receive ADD COLUMN evil int",
    "TRUNCATE pgmq.q_orders__receive",
    "SELECT pgmq.create('evil')",
    "SELECT pgmq.drop_queue('orders__receive')",
    "SELECT count(*) FROM pgmq.q_other",
    "SELECT pgmq.send('other', '{}'::jsonb)",
    "DELETE FROM orchestrator.pipelines",
    "UPDATE orchestrator.pipelines SET spec_hash = 'x'",
    "SELECT count(*) FROM secrets",
]


@pytest.fixture
async def role(dsn: str, admin_dsn: str) -> AsyncIterator[str]:
    """A fresh LOGIN role with a password, dropped after the test (roles are cluster-wide)."""
    async with temporary_role(admin_dsn, [dsn], password=PASSWORD) as name:
        yield name


@pytest.fixture
async def granted(dsn: str, role: str, tmp_path: Path) -> Path:
    """The project applied with `orchestrator apply --grant ROLE` (as the owner)."""
    root = write_project(tmp_path / "project", {"orders": ORDERS, "events": EVENTS})
    (root / "handlers" / "ledger.py").write_text(HANDLERS)
    owner = await connect(dsn)
    try:
        await owner.execute(LEDGER)
        await owner.execute("CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('x')")
        await owner.execute("SELECT pgmq.create('other')")
        # The application's own table: granted by the application, not by orchestrator.
        await owner.execute(f"GRANT INSERT ON ledger TO {role}")
    finally:
        await owner.close()
    result = await asyncio.to_thread(cli, "apply", "--grant", role, "--dsn", dsn, cwd=root)
    assert result.code == 0, result.text
    assert f"Granted role {role} what `orchestrator run` needs" in result.out
    return root


async def test_workers_run_as_the_granted_role(dsn: str, role: str, granted: Path) -> None:
    worker_dsn = with_login(dsn, role, PASSWORD)
    for pipeline in ("orders", "events"):
        for n in range(5):
            sent = await asyncio.to_thread(
                cli, "send", pipeline, f'{{"n": {n}}}', "--dsn", worker_dsn, cwd=granted
            )
            assert sent.code == 0, sent.text
    ran = await asyncio.to_thread(
        cli,
        "run",
        "--drain",
        "--log-level",
        "debug",
        "--dsn",
        worker_dsn,
        cwd=granted,
        timeout=120,
    )
    assert ran.code == 0, ran.text
    assert PASSWORD not in ran.text

    owner = await connect(dsn)
    try:
        rows = await owner.fetch("SELECT pipeline, step, count(*) AS n FROM ledger GROUP BY 1, 2")
        assert {(r["pipeline"], r["step"]): r["n"] for r in rows} == {
            ("orders", "receive"): 5,
            ("orders", "ship"): 5,
            ("events", "ingest"): 5,
        }
        assert await owner.fetchval("SELECT count(*) FROM pgmq.a_orders__ship") == 5
        assert await owner.fetchval("SELECT count(*) FROM pgmq.a_events__ingest") == 5
    finally:
        await owner.close()


async def test_the_granted_role_cannot_create_drop_or_wander(
    dsn: str, role: str, granted: Path
) -> None:
    worker = await connect(with_login(dsn, role, PASSWORD))
    allowed = []
    try:
        assert await worker.fetchval("SELECT current_user") == role
        assert not await worker.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = $1", role)
        for statement in REFUSED:
            try:
                async with worker.transaction():
                    await worker.execute(statement)
            except asyncpg.InsufficientPrivilegeError:
                continue
            except asyncpg.PostgresError as exc:
                # pgmq.create refuses for want of CREATE on the schema, reported its own way
                if "permission denied" in str(exc):
                    continue
                allowed.append(f"{statement}: {type(exc).__name__}: {exc}")
            else:
                allowed.append(statement)
        # Without grant options, GRANT only warns: check that nothing was passed on.
        await worker.execute("GRANT SELECT ON pgmq.q_orders__receive TO PUBLIC")
        assert not await worker.fetchval(
            "SELECT has_table_privilege('public', 'pgmq.q_orders__receive', 'SELECT')"
        )
    finally:
        await worker.close()
    assert allowed == []


async def test_ops_commands_leak_no_password_as_the_role(
    dsn: str, role: str, granted: Path
) -> None:
    worker_dsn = with_login(dsn, role, PASSWORD)
    run_id = (
        await asyncio.to_thread(cli, "send", "orders", "{}", "--dsn", worker_dsn, cwd=granted)
    ).out.strip()
    for command in (("status",), ("trace", run_id), ("dlq", "list", "orders"), ("queue", "list")):
        result = await asyncio.to_thread(cli, *command, "--dsn", worker_dsn, cwd=granted)
        assert PASSWORD not in result.text, command
        assert "Traceback" not in result.text, result.text
