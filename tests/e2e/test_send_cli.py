"""`orchestrator send`: start runs from the shell; bad input is one line and sends nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.db import connect
from tests.integration.process.support import CHAIN, Project, make_project, provision

ENTRY = "chain__first"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path, {"chain": CHAIN})


@pytest.fixture
async def db(dsn: str, project: Project) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(dsn)
    try:
        await provision(conn, project.pipelines())
        yield conn
    finally:
        await conn.close()


async def _messages(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT message, headers, vt > now() + interval '20 seconds' AS later"
        f" FROM pgmq.q_{ENTRY} ORDER BY msg_id"
    )


def _error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("orchestrator: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


async def test_one_payload_prints_its_run_id(
    project: Project, dsn: str, db: asyncpg.Connection
) -> None:
    result = project.cli("send", "chain", '{"order": 7, "tags": ["a"]}', "--dsn", dsn)
    assert result.returncode == 0, result.stderr
    run_id = uuid.UUID(result.stdout.strip())
    [message] = await _messages(db)
    assert message["message"] == {"order": 7, "tags": ["a"]}
    assert message["headers"]["run_id"] == str(run_id)
    assert message["headers"]["step"] == "first" and not message["later"]


async def test_stdin_and_json_output(project: Project, dsn: str, db: asyncpg.Connection) -> None:
    result = project.cli("send", "chain", "-", "--json", "--dsn", dsn, input=b'{"from": "stdin"}')
    assert result.returncode == 0, result.stderr
    [run_id] = json.loads(result.stdout)
    [message] = await _messages(db)
    assert message["message"] == {"from": "stdin"}
    assert message["headers"]["run_id"] == run_id


async def test_a_file_sends_one_run_per_line_in_order(
    project: Project, dsn: str, db: asyncpg.Connection
) -> None:
    lines = [json.dumps({"n": n}) for n in range(2500)]
    lines.insert(3, "")  # blank lines are skipped
    (project.root / "runs.jsonl").write_text("\n".join(lines) + "\n")
    result = project.cli("send", "chain", "--file", "runs.jsonl", "--dsn", dsn)
    assert result.returncode == 0, result.stderr
    run_ids = result.stdout.split()
    assert len(run_ids) == len(set(run_ids)) == 2500
    assert "sending [" not in result.stderr  # no progress bar off a terminal
    messages = await _messages(db)
    assert [m["message"]["n"] for m in messages] == list(range(2500))
    assert [m["headers"]["run_id"] for m in messages] == run_ids


async def test_file_from_stdin_with_a_delay(
    project: Project, dsn: str, db: asyncpg.Connection
) -> None:
    result = project.cli(
        "send", "chain", "--file", "-", "--delay", "1m", "--dsn", dsn, input=b'{"a": 1}\n{"a": 2}'
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 2
    assert [m["later"] for m in await _messages(db)] == [True, True]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"a": 1,}', "payload at line 1, column 8: not valid JSON: trailing comma is not allowed"),
        ('{\n  "a": tru\n}', "payload at line 2, column"),
        ("[1, 2]", "the payload must be a JSON object, not an array"),
        ('"text"', "the payload must be a JSON object, not a string"),
        ('{"a": "x\\u0000y"}', "the payload['a'] contains a NUL character (\\u0000)"),
        ('{"k\\u0000": 1}', "NUL character"),
        ('{"a": NaN}', "not valid JSON"),
    ],
)
async def test_bad_payloads_send_nothing(
    project: Project, dsn: str, db: asyncpg.Connection, payload: str, message: str
) -> None:
    result = project.cli("send", "chain", payload, "--dsn", dsn)
    assert result.returncode == 1
    assert message in _error(result.stderr)
    assert await _messages(db) == []


async def test_one_bad_line_in_a_file_sends_nothing(
    project: Project, dsn: str, db: asyncpg.Connection
) -> None:
    (project.root / "runs.jsonl").write_text('{"a": 1}\n{"a": 2\n[3]\n{"a": 4}\n')
    result = project.cli("send", "chain", "--file", "runs.jsonl", "--dsn", dsn)
    assert result.returncode == 1
    assert "runs.jsonl:2:8: error: not valid JSON" in result.stderr
    assert "runs.jsonl:3:1: error: the payload must be a JSON object, not an array" in result.stderr
    assert "2 invalid lines in runs.jsonl; nothing was sent" in _error(result.stderr)
    assert result.stdout == ""
    assert await _messages(db) == []


async def test_an_unknown_pipeline_is_one_line(
    project: Project, dsn: str, db: asyncpg.Connection
) -> None:
    result = project.cli("send", "orders", '{"a": 1}', "--dsn", dsn)
    assert result.returncode != 0
    line = _error(result.stderr)
    assert "orders" in line and "not applied" in line
    (project.root / "runs.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    result = project.cli("send", "orders", "--file", "runs.jsonl", "--dsn", dsn)
    assert result.returncode != 0
    assert "orders" in _error(result.stderr)
    assert await _messages(db) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give one payload (JSON or -) or --file PATH"),
        (['{"a": 1}', "--file", "runs.jsonl"], "give one payload (JSON or -) or --file PATH"),
        (["--file", "missing.jsonl"], "no such file: missing.jsonl"),
    ],
)
def test_usage_mistakes_exit_2(project: Project, args: list[str], message: str) -> None:
    result = project.cli("send", "chain", *args, "--dsn", "postgresql://127.0.0.1:1/x")
    assert result.returncode == 2
    assert message in _error(result.stderr)


async def test_a_payload_over_the_size_limit_sends_nothing(
    project: Project, dsn: str, db: asyncpg.Connection
) -> None:
    big = json.dumps({"blob": "x" * (1 << 20)}).encode()
    result = project.cli("send", "chain", "-", "--dsn", dsn, input=big)
    assert result.returncode == 1
    assert "the limit is 1,048,576 (1 MiB)" in _error(result.stderr)
    assert await _messages(db) == []
