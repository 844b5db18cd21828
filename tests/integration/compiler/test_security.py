"""Least privilege and injection: `apply --grant ROLE`, and names that must never reach SQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.compiler import InvalidRole, UnsafeName, apply, plan
from orchestrator.db import connect
from orchestrator.spec import load_pipelines
from tests.integration.compiler.conftest import ORDERS, Write
from tests.support.pg import temporary_role, with_login

PASSWORD = "worker-secret"

EVENTS = """
pipeline: events
queues:
  partitioned: {interval: 1 day}
steps:
  ingest: {handler: app.events:ingest}
"""


@pytest.fixture
async def role(dsn: str, admin_dsn: str) -> AsyncIterator[str]:
    """A fresh login role (roles are cluster-wide: dropped again after the test)."""
    async with temporary_role(admin_dsn, [dsn], password=PASSWORD) as name:
        yield name


async def test_granted_role_runs_queues_and_cannot_create(
    conn: asyncpg.Connection, write: Write, role: str
) -> None:
    await conn.execute("SELECT pgmq.create('other')")
    result = await apply(conn, write(orders=ORDERS, events=EVENTS), grant=role)
    assert result.grant is not None
    assert result.lines()[-1] == (
        f"Granted role {role} what `orchestrator run` needs on 8 queues "
        f"({result.grant.tables} tables, {result.grant.sequences} sequences); "
        "it cannot create objects."
    )
    await conn.execute(f'SET ROLE "{role}"')
    for queue in ("orders__receive", "orders_dlq", "events__ingest"):
        msg_id = await conn.fetchval(
            "SELECT pgmq.send($1, $2::jsonb, $3::jsonb)", queue, {"a": 1}, {"run_id": "r1"}
        )
        read = await conn.fetch("SELECT * FROM pgmq.read($1, 30, 1)", queue)
        assert [r["msg_id"] for r in read] == [msg_id]
        assert await conn.fetchval("SELECT pgmq.archive($1, $2::bigint)", queue, msg_id)
        metrics = await conn.fetchrow("SELECT * FROM pgmq.metrics($1)", queue)
        assert metrics["total_messages"] == 1
    await conn.execute(
        "INSERT INTO orchestrator.joins (pipeline, step, run_id, expected) "
        "VALUES ('orders', 'close', gen_random_uuid(), '{ship,bill}')"
    )
    assert (
        await conn.fetchval("SELECT entry_step FROM orchestrator.pipelines WHERE name = 'orders'")
        == "receive"
    )
    refused = [
        "CREATE TABLE pgmq.evil (x int)",
        "CREATE TABLE pgmq_ext.evil (x int)",
        "CREATE TABLE orchestrator.evil (x int)",
        "CREATE TABLE public.evil (x int)",
        "SELECT count(*) FROM pgmq.q_other",
        "SELECT pgmq.send('other', '{}'::jsonb)",
        "SELECT pgmq.create('evil')",
        "DELETE FROM orchestrator.pipelines",
        "DROP TABLE pgmq.q_orders__ship",
    ]
    for statement in refused:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute(statement)
    await conn.execute("RESET ROLE")


async def test_granted_role_as_its_own_login(dsn: str, write: Write, role: str) -> None:
    admin = await connect(dsn)
    try:
        await apply(admin, write(orders=ORDERS), grant=role)
    finally:
        await admin.close()
    worker = await connect(with_login(dsn, role, PASSWORD))
    try:
        assert await worker.fetchval("SELECT current_user") == role
        msg_id = await worker.fetchval("SELECT pgmq.send('orders__check', '{}'::jsonb)")
        assert await worker.fetchval("SELECT pgmq.delete('orders__check', $1::bigint)", msg_id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await worker.execute("CREATE TABLE pgmq.evil (x int)")
    finally:
        await worker.close()


@pytest.mark.parametrize(
    "bad",
    [
        'worker"; DROP SCHEMA pgmq CASCADE; --',
        "worker; DROP TABLE x",
        "worker--",
        "Worker",
        "wörker",
        "w\u043erker",  # Cyrillic o
        "w" * 64,
        "",
        "pg_read_all_data",
        "public",
    ],
)
async def test_bad_role_names_are_refused_before_any_sql(
    empty_dsn: str, write: Write, bad: str
) -> None:
    conn = await connect(empty_dsn)
    logged: list[str] = []
    conn.add_query_logger(lambda q: logged.append(q.query))
    try:
        with pytest.raises(InvalidRole):
            await apply(conn, write(orders=ORDERS), grant=bad)
        assert await conn.fetchval("SELECT to_regnamespace('pgmq')") is None
    finally:
        await conn.close()
    if bad:
        assert not any(bad in query for query in logged)


async def test_unknown_role_is_a_clear_error(empty_dsn: str, write: Write) -> None:
    conn = await connect(empty_dsn)
    try:
        with pytest.raises(InvalidRole, match="role nobody_here does not exist; create it first"):
            await apply(conn, write(orders=ORDERS), grant="nobody_here")
        assert await conn.fetchval("SELECT to_regnamespace('pgmq')") is None
    finally:
        await conn.close()


EVIL_NAMES = [
    'orders"; DROP SCHEMA pgmq CASCADE; --',
    "orders'); DROP TABLE orchestrator.pipelines; --",
    "orders/**/",
    "Orders",
    "ordérs",
    "o" * 60,
]


@pytest.mark.parametrize("evil", EVIL_NAMES)
async def test_names_built_around_validation_never_reach_sql(
    empty_dsn: str, write: Write, evil: str
) -> None:
    (orders,) = write(orders=ORDERS)
    renamed = orders.model_copy(update={"name": evil})
    conn = await connect(empty_dsn)
    logged: list[str] = []
    conn.add_query_logger(lambda q: logged.append(q.query))
    try:
        with pytest.raises(UnsafeName):
            await apply(conn, [renamed])
        with pytest.raises(UnsafeName):
            await plan(conn, [renamed])
    finally:
        await conn.close()
    assert logged == []


@pytest.mark.parametrize("evil", EVIL_NAMES)
def test_evil_names_in_pipeline_files_are_refused_by_validation(
    pipelines_dir: Path, evil: str
) -> None:
    as_pipeline = ORDERS.replace("pipeline: orders", f"pipeline: {json.dumps(evil)}")
    as_step = ORDERS.replace("  ship: {", f"  {json.dumps(evil)}: {{").replace(
        "next: [ship, bill]", f"next: [{json.dumps(evil)}, bill]"
    )
    for text in (as_pipeline, as_step):
        (pipelines_dir / "orders.yaml").write_text(text, encoding="utf-8")
        result = load_pipelines(pipelines_dir)
        assert result.pipelines == [] and result.diagnostics
