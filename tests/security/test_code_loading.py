"""What code runs: only the handlers the applied pipelines name, and payloads are only JSON.

A module that leaves a marker file when it is imported stands for code an attacker would
like to run. It must not be imported by `validate` (without --import-handlers), `plan`,
`apply`, `status` or `send`, nor by `run` for a pipeline that is not applied or changed
since apply, nor because a message names it. Payloads are JSON: nothing in them is
unpickled or evaluated, and a body that is not a JSON object is dead-lettered untouched.
"""

from __future__ import annotations

import asyncio
import base64
import pickle
from pathlib import Path

import pytest

from orchestrator.db import connect
from tests.badinput.support import DatabaseState, cli, write_project

ORDERS = """\
pipeline: orders
steps:
  receive: {handler: handlers.seen:receive}
"""

ROGUE = """\
pipeline: rogue
steps:
  start: {handler: handlers.rogue:start}
"""

SEEN = """\
async def receive(payload, ctx):
    await ctx.conn.execute(
        "INSERT INTO seen (payload, headers) VALUES ($1, $2)", payload, dict(ctx.headers)
    )
"""

ROGUE_MODULE = """\
import pathlib

pathlib.Path(__file__).resolve().parent.parent.joinpath("IMPORTED").write_text("rogue ran")


async def start(payload, ctx):
    return payload
"""


class _Boom:
    """Unpickling this would run a shell command creating the marker."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("touch IMPORTED",))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = write_project(tmp_path / "project", {"orders": ORDERS})
    (root / "handlers" / "seen.py").write_text(SEEN)
    (root / "handlers" / "rogue.py").write_text(ROGUE_MODULE)
    return root


@pytest.fixture
async def applied(dsn: str, project: Path) -> str:
    from orchestrator.compiler import apply
    from orchestrator.spec import load_pipelines_or_raise

    conn = await connect(dsn)
    try:
        await apply(conn, load_pipelines_or_raise(project / "pipelines"))
        await conn.execute("CREATE TABLE seen (payload jsonb, headers jsonb)")
    finally:
        await conn.close()
    return dsn


def marker(root: Path) -> Path:
    return root / "IMPORTED"


async def test_commands_that_do_not_run_handlers_never_import_them(
    project: Path, applied: str
) -> None:
    (project / "pipelines" / "rogue.yaml").write_text(ROGUE)
    commands = [
        ("validate",),
        ("plan", "--dsn", applied),
        ("status", "--dsn", applied),
        ("send", "orders", '{"handler": "handlers.rogue:start"}', "--dsn", applied),
        ("apply", "--dsn", applied),
        ("status", "--dsn", applied),
    ]
    for command in commands:
        result = await asyncio.to_thread(cli, *command, cwd=project)
        assert result.code == 0, f"{command}: {result.text}"
        assert not marker(project).exists(), f"{command} imported a handler module"


async def test_run_imports_no_handler_of_a_pipeline_that_is_not_applied(
    project: Path, applied: str
) -> None:
    """Handlers are imported from the references of the applied pipelines only: `run` checks
    the database before it imports anything of a pipeline file nobody applied."""
    (project / "pipelines" / "rogue.yaml").write_text(ROGUE)
    result = await asyncio.to_thread(cli, "run", "--drain", "--dsn", applied, cwd=project)
    assert result.code == 4, result.text
    assert "pipeline rogue is not applied" in result.err
    assert not marker(project).exists(), "run imported the handler of an unapplied pipeline"


async def test_run_imports_no_handler_of_a_pipeline_changed_since_apply(
    project: Path, applied: str
) -> None:
    (project / "pipelines" / "orders.yaml").write_text(
        ORDERS.replace("handlers.seen:receive", "handlers.rogue:start")
    )
    result = await asyncio.to_thread(cli, "run", "--drain", "--dsn", applied, cwd=project)
    assert result.code == 4, result.text
    assert "changed since it was applied" in result.err
    assert not marker(project).exists(), "run imported a handler the database never applied"


async def test_messages_cannot_choose_code_and_payloads_stay_json(
    project: Path, applied: str
) -> None:
    import orchestrator

    payload = {
        "handler": "handlers.rogue:start",
        "module": "handlers.rogue",
        "__class__": "os.system",
        "py/object": "handlers.rogue._Boom",
        "!!python/object/apply:os.system": ["touch IMPORTED"],
        "eval": "__import__('os').system('touch IMPORTED')",
        "pickle": base64.b64encode(pickle.dumps(_Boom())).decode(),
    }
    conn = await connect(applied)
    try:
        await orchestrator.start(
            "orders", payload, conn=conn, headers={"handler": "handlers.rogue:start"}
        )
        # Bodies another program put on the queue: not JSON objects, so no handler takes them.
        raw = [base64.b64encode(pickle.dumps(_Boom())).decode(), [1, 2], None]
        for body in raw:
            await conn.execute(
                "SELECT pgmq.send('orders__receive', $1::jsonb, '{\"run_id\": null}'::jsonb)",
                body,
            )
        before = await DatabaseState.of(conn)
    finally:
        await conn.close()
    assert before  # read before the run, for the message count below
    result = await asyncio.to_thread(
        cli, "run", "--drain", "--pipeline", "orders", "--dsn", applied, cwd=project
    )
    assert result.code == 0, result.text
    assert not marker(project).exists()

    conn = await connect(applied)
    try:
        seen = await conn.fetch("SELECT payload, headers FROM seen")
        assert [r["payload"] for r in seen] == [payload]
        assert seen[0]["headers"]["handler"] == "handlers.rogue:start"
        letters = await conn.fetch(
            "SELECT message->'error'->>'type' AS type, (message->>'permanent')::bool AS permanent,"
            " message->'payload' AS payload FROM pgmq.q_orders_dlq ORDER BY msg_id"
        )
    finally:
        await conn.close()
    assert [(r["type"], r["permanent"]) for r in letters] == [("InvalidPayload", True)] * 3
    assert [r["payload"] for r in letters] == raw
