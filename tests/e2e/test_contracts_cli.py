"""Contracts from the shell: `validate` prints a broken edge as CI shows it, `send` refuses a
payload that breaks the entry step's input (exit 1, one line with the pointer, nothing sent)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.db import connect
from tests.integration.process.support import Project, make_project, provision

TYPED = """\
pipeline: typed
steps:
  take:
    handler: handlers.mod:step
    input: {$ref: order.json}
    output: {$ref: order.json}
    next: [give]
  give:
    handler: handlers.mod:step
    input:
      type: object
      properties: {order: {type: string}, quantity: {type: integer}}
      required: [order, quantity]
"""
ORDER = {
    "type": "object",
    "properties": {"order": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
    "required": ["order", "quantity"],
}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = make_project(tmp_path, {"typed": TYPED})
    (project.pipelines_dir / "order.json").write_text(json.dumps(ORDER))
    return project


@pytest.fixture
async def db(dsn: str, project: Project) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(dsn)
    try:
        await provision(conn, project.pipelines())
        yield conn
    finally:
        await conn.close()


def test_validate_prints_a_broken_edge_as_file_line_col(project: Project) -> None:
    loose = {**ORDER, "required": ["order"]}
    (project.pipelines_dir / "order.json").write_text(json.dumps(loose))
    result = project.cli("validate", str(project.pipelines_dir))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{project.pipelines_dir / 'typed.yaml'}:10:5: error: contract 'take' output -> "
        "'give' input at /quantity: optional in the output but required by the input"
    ]


async def test_send_refuses_a_payload_breaking_the_entry_contract(
    project: Project, dsn: str, db: asyncpg.Connection
) -> None:
    result = project.cli("send", "typed", '{"order": "A", "quantity": "3"}', "--dsn", dsn)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "orchestrator: error: the payload breaks the input contract of step 'take' of "
        "pipeline 'typed' at /quantity: must be integer (rule 'type')"
    )
    assert await db.fetchval("SELECT count(*) FROM pgmq.q_typed__take") == 0


async def test_one_bad_payload_in_a_file_sends_nothing(
    project: Project, dsn: str, db: asyncpg.Connection
) -> None:
    lines = [{"order": "A", "quantity": 1}, {"order": "B", "quantity": 0}, {"order": "C"}]
    (project.root / "runs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = project.cli("send", "typed", "--file", "runs.jsonl", "--dsn", dsn)
    assert result.returncode == 1
    assert "payload 2 of 3 breaks the input contract" in result.stderr
    assert "at /quantity: must be bigger than or equal to 1" in result.stderr
    assert await db.fetchval("SELECT count(*) FROM pgmq.q_typed__take") == 0
    good = project.cli("send", "typed", '{"order": "A", "quantity": 3}', "--dsn", dsn)
    assert good.returncode == 0, good.stderr
    headers = await db.fetchval("SELECT headers FROM pgmq.q_typed__take")
    assert headers["spec_hash"] == project.pipeline("typed").spec_hash()
