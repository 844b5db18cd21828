"""`orchestrator install` and `orchestrator queue ...` run as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from orchestrator.db import connect
from orchestrator.queue import sqlfiles

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "orchestrator"]
LATEST = sqlfiles.latest_version()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("orchestrator: error: "), lines[0]
    return lines[0].removeprefix("orchestrator: error: ")


async def test_install_prints_one_line_and_is_idempotent(empty_dsn: str) -> None:
    first = _run("install", "--dsn", empty_dsn)
    assert (first.returncode, first.stdout, first.stderr) == (
        0,
        f"installed queue layer version {LATEST}\n",
        "",
    )
    again = _run("install", "--dsn", empty_dsn)
    assert (again.returncode, again.stdout, again.stderr) == (
        0,
        f"already at version {LATEST}\n",
        "",
    )
    conn = await connect(empty_dsn)
    try:
        assert await conn.fetchval("SELECT max(version) FROM pgmq_ext.schema_version") == LATEST
    finally:
        await conn.close()


def test_install_with_an_unreachable_database() -> None:
    result = _run("install", "--dsn", "postgresql://someone:s3cret@127.0.0.1:1/nowhere")
    assert result.returncode == 3
    assert result.stdout == ""
    message = _one_error_line(result)
    assert message.startswith("cannot connect to postgresql://someone:***@127.0.0.1:1/nowhere")
    assert "s3cret" not in result.stderr


async def test_install_refuses_a_foreign_pgmq_schema(empty_dsn: str) -> None:
    conn = await connect(empty_dsn)
    try:
        await conn.execute("CREATE SCHEMA pgmq; CREATE TABLE pgmq.meta (queue_name text)")
        result = _run("install", "--dsn", empty_dsn)
        assert (result.returncode, result.stdout) == (1, "")
        assert _one_error_line(result).startswith(
            "schema pgmq exists but was not created by orchestrator"
        )
        assert await conn.fetchval("SELECT to_regnamespace('pgmq_ext')") is None
    finally:
        await conn.close()


async def test_install_adopt_takes_over_pgmq(empty_dsn: str, tmp_path: Path) -> None:
    """Adopt a PGMQ, then apply pipelines and run them on top, as a user would."""
    from tests.badinput.support import cli, write_project
    from tests.integration.queue.helpers import pgmq_sql

    conn = await connect(empty_dsn)
    try:
        await conn.execute(pgmq_sql())
        await conn.execute("SELECT pgmq.create('order-events'), pgmq.create('bad name')")
        await conn.execute("SELECT pgmq.send('order-events', '{\"a\": 1}'::jsonb)")
        refused = _run("install", "--adopt", "--dsn", empty_dsn)
        assert (refused.returncode, refused.stdout) == (1, "")
        assert _one_error_line(refused) == (
            "cannot adopt the PGMQ in this database (nothing was changed): queue 'bad name': "
            "a name the queue layer refuses (invalid queue name 'bad name': use only letters "
            "a-z, digits, underscores and hyphens)"
        )
        await conn.execute("SELECT pgmq.drop_queue('bad name')")
        adopted = _run("install", "--adopt", "--dsn", empty_dsn)
        assert (adopted.returncode, adopted.stderr) == (0, "")
        assert adopted.stdout.splitlines() == [
            "adopting PGMQ installed from its SQL files in schema pgmq:",
            "  keep queue order-events (plain): 1 messages, 0 archived",
            "  replace PGMQ's functions and types with the queue layer's; add schema pgmq_ext",
            f"adopted; queue layer version {LATEST}",
        ]
        assert await conn.fetchval('SELECT message FROM pgmq."q_order-events"') == {"a": 1}
        root = write_project(tmp_path)
        applied = cli("apply", "--yes", "--dsn", empty_dsn, cwd=root, timeout=120)
        assert applied.code == 0, applied.text
        sent = cli("send", "orders", '{"n": 1}', "--dsn", empty_dsn, cwd=root)
        assert sent.code == 0, sent.text
        ran = cli("run", "--drain", "--dsn", empty_dsn, cwd=root, timeout=120)
        assert ran.code == 0, ran.text
        assert await conn.fetchval("SELECT count(*) FROM pgmq.a_orders__ship") == 1
        assert await conn.fetchval('SELECT count(*) FROM pgmq."q_order-events"') == 1
    finally:
        await conn.close()


async def test_queue_commands(empty_dsn: str) -> None:
    missing = _run("queue", "list", "--dsn", empty_dsn)
    assert missing.returncode == 4
    assert "run `orchestrator install`" in _one_error_line(missing)
    assert _run("install", "--dsn", empty_dsn).returncode == 0

    empty = _run("queue", "list", "--dsn", empty_dsn)
    assert (empty.returncode, empty.stdout) == (0, "no queues\n")

    created = _run("queue", "create", "Jobs", "--dsn", empty_dsn)
    assert (created.returncode, created.stdout) == (0, "created queue jobs\n")
    again = _run("queue", "create", "jobs", "--dsn", empty_dsn)
    assert (again.returncode, again.stdout) == (0, "queue jobs already exists\n")
    part = _run(
        "queue",
        "create",
        "daily",
        "--partitioned",
        "--partition-interval",
        "1 day",
        "--retention-interval",
        "7 days",
        "--dsn",
        empty_dsn,
    )
    assert (part.returncode, part.stdout) == (0, "created queue daily\n")
    assert _run("queue", "create", "fast", "--unlogged", "--dsn", empty_dsn).returncode == 0

    listed = _run("queue", "list", "--json", "--dsn", empty_dsn)
    assert listed.returncode == 0
    queues = json.loads(listed.stdout)
    assert sorted((q["queue_name"], q["is_partitioned"], q["is_unlogged"]) for q in queues) == [
        ("daily", True, False),
        ("fast", False, True),
        ("jobs", False, False),
    ]
    text = _run("queue", "list", "--dsn", empty_dsn).stdout.splitlines()
    assert text[0].split() == ["QUEUE", "KIND", "CREATED"]
    assert sorted(line.split()[:2] for line in text[1:]) == [
        ["daily", "partitioned"],
        ["fast", "unlogged"],
        ["jobs", "plain"],
    ]

    conn = await connect(empty_dsn)
    try:
        await conn.execute("SELECT pgmq.send_batch('jobs', ARRAY['{}', '{}', '{}']::jsonb[])")
    finally:
        await conn.close()
    metrics = _run("queue", "metrics", "jobs", "--json", "--dsn", empty_dsn)
    assert metrics.returncode == 0
    one = json.loads(metrics.stdout)
    assert (one["queue_name"], one["queue_length"], one["total_messages"]) == ("jobs", 3, 3)
    every = json.loads(_run("queue", "metrics", "--json", "--dsn", empty_dsn).stdout)
    assert sorted(m["queue_name"] for m in every) == ["daily", "fast", "jobs"]

    purged = _run("queue", "purge", "jobs", "--json", "--dsn", empty_dsn)
    assert json.loads(purged.stdout) == {"queue_name": "jobs", "purged": 3}
    purged = _run("queue", "purge", "jobs", "--dsn", empty_dsn)
    assert purged.stdout == "purged 0 messages from queue jobs\n"

    dropped = _run("queue", "drop", "fast", "--dsn", empty_dsn)
    assert (dropped.returncode, dropped.stdout) == (0, "dropped queue fast\n")
    gone = _run("queue", "drop", "fast", "--dsn", empty_dsn)
    assert gone.returncode == 1
    assert _one_error_line(gone) == 'queue "fast" does not exist'
    unknown = _run("queue", "purge", "nope", "--dsn", empty_dsn)
    assert (unknown.returncode, _one_error_line(unknown)) == (1, 'queue "nope" does not exist')

    bad = _run("queue", "create", "a; drop table x", "--dsn", empty_dsn)
    assert bad.returncode == 1
    assert _one_error_line(bad) == (
        "queue name contains invalid characters: $, ;, --, or \\' (got 'a; drop table x')"
    )
    bad_interval = _run(
        "queue", "create", "p2", "--partitioned", "--partition-interval", "0", "--dsn", empty_dsn
    )
    assert bad_interval.returncode == 1
    assert _one_error_line(bad_interval) == "partition_interval must be greater than 0, got '0'"

    conn = await connect(empty_dsn)
    try:
        names = await conn.fetch("SELECT queue_name FROM pgmq.meta ORDER BY 1")
        assert [r["queue_name"] for r in names] == ["daily", "jobs"]
    finally:
        await conn.close()


def test_usage_errors_exit_2() -> None:
    result = _run("queue", "create")
    assert result.returncode == 2
    assert "the following arguments are required: name" in result.stderr
    conflict = _run("queue", "create", "x", "--unlogged", "--partitioned")
    assert conflict.returncode == 2
    assert "not allowed with argument" in conflict.stderr


async def test_queue_commands_see_queues_created_in_sql(dsn: str) -> None:
    """The commands only call the API, so a database installed by any means works."""
    conn: asyncpg.Connection = await connect(dsn)
    try:
        await conn.execute("SELECT pgmq.create('made_in_sql')")
    finally:
        await conn.close()
    listed = json.loads(_run("queue", "list", "--json", "--dsn", dsn).stdout)
    assert [q["queue_name"] for q in listed] == ["made_in_sql"]
