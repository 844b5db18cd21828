"""`orchestrator plan` and `orchestrator apply` as a user (or CI) runs them."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator.db import connect
from tests.support.pg import temporary_role

SCRIPT = Path(sys.executable).parent / "orchestrator"
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "orchestrator"]

ORDERS = """
pipeline: orders
steps:
  receive: {handler: app.orders:receive, next: [ship]}
  ship: {handler: app.orders:ship}
"""
SMALLER = """
pipeline: orders
steps:
  receive: {handler: app.orders:receive}
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with pipelines/orders.yaml."""
    (tmp_path / "pipelines").mkdir()
    write(tmp_path, ORDERS)
    return tmp_path


def write(project: Path, text: str, name: str = "orders") -> None:
    (project / "pipelines" / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")


async def send(dsn: str, queue: str) -> None:
    conn = await connect(dsn)
    try:
        await conn.execute("SELECT pgmq.send($1, '{}'::jsonb)", queue)
    finally:
        await conn.close()


async def queue_names(dsn: str) -> set[str]:
    conn = await connect(dsn)
    try:
        return {r[0] for r in await conn.fetch("SELECT queue_name FROM pgmq.meta")}
    finally:
        await conn.close()


def test_plan_apply_cycle_with_detailed_exit_codes(project: Path, empty_dsn: str) -> None:
    pending = run("plan", "--dsn", empty_dsn, "--detailed-exitcode", cwd=project)
    assert (pending.returncode, pending.stderr) == (2, "")
    assert pending.stdout.splitlines()[0] == "Plan: 6 changes"
    assert "  + queue orders__ship: create (notify every 10ms)" in pending.stdout

    sql = run("plan", "--dsn", empty_dsn, "--sql", cwd=project)
    assert sql.returncode == 0
    assert "SELECT pgmq.create('orders__ship');" in sql.stdout

    applied = run("apply", "--dsn", empty_dsn, cwd=project)
    assert (applied.returncode, applied.stderr) == (0, "")
    assert applied.stdout.splitlines()[-1] == "Applied 6 changes."

    again = run("apply", "--dsn", empty_dsn, cwd=project)
    assert (again.returncode, again.stdout, again.stderr) == (0, "No changes.\n", "")

    clean = run("plan", "--dsn", empty_dsn, "--detailed-exitcode", cwd=project)
    assert (clean.returncode, clean.stdout) == (0, "No changes: the database matches 1 pipeline.\n")

    as_json = run("plan", "--dsn", empty_dsn, "--json", cwd=project)
    assert json.loads(as_json.stdout)["pending"] is False


def test_broken_pipeline_file_reports_diagnostics_and_exits_1(
    project: Path, empty_dsn: str
) -> None:
    write(project, "pipeline: broken\nsteps:\n  a: {handler: app:a, nxt: b}\n", name="broken")
    for command in (["plan", "--detailed-exitcode"], ["apply", "--yes"]):
        done = run(*command, "--dsn", empty_dsn, cwd=project)
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == (
            "pipelines/broken.yaml:3:23: error: unknown key 'nxt' (did you mean 'next'?)\n"
        )


def test_errors_exit_1_with_detailed_exitcode(project: Path) -> None:
    dead = "postgresql://someone:hunter2@127.0.0.1:9/nowhere"
    done = run("plan", "--dsn", dead, "--detailed-exitcode", cwd=project)
    assert done.returncode == 1
    assert done.stderr.startswith("orchestrator: error: cannot connect to ")
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr
    missing = run("plan", "--dsn", dead, "--pipelines", "nope", "--detailed-exitcode", cwd=project)
    assert (missing.returncode, missing.stderr) == (
        1,
        "orchestrator: error: no such file or directory: nope\n",
    )


async def test_destructive_changes_need_allow_destroy_and_yes(project: Path, dsn: str) -> None:
    assert run("apply", "--dsn", dsn, cwd=project).returncode == 0
    await send(dsn, "orders__ship")
    write(project, SMALLER)

    refused = run("apply", "--dsn", dsn, cwd=project)
    assert refused.returncode == 1
    assert refused.stderr == (
        "orchestrator: error: refusing to lose data: queue orders__ship holds 1 message: drop "
        "(step ship is no longer in pipeline orders). Nothing was changed; pass "
        "--allow-destroy to apply anyway\n"
    )
    no_terminal = run("apply", "--dsn", dsn, "--allow-destroy", cwd=project)
    assert no_terminal.returncode == 1
    assert "pass --yes to apply them without a terminal" in no_terminal.stderr
    assert "orders__ship" in await queue_names(dsn)

    plan = run("plan", "--dsn", dsn, "--detailed-exitcode", cwd=project)
    assert plan.returncode == 2
    assert (
        "  - queue orders__ship: drop (step ship is no longer in pipeline orders); holds 1 "
        "message [destructive]" in plan.stdout
    )
    done = run("apply", "--dsn", dsn, "--allow-destroy", "--yes", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "orders__ship" not in await queue_names(dsn)


def _run_on_terminal(args: list[str], cwd: Path, answer: str) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin/stdout, answering its prompt."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [*CLI, *args], cwd=cwd, stdin=secondary, stdout=secondary, stderr=secondary
    )
    os.close(secondary)
    output = b""
    answered = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            if not answered and b"[y/N]" in output:
                os.write(primary, answer.encode() + b"\n")
                answered = True
        elif process.poll() is not None:
            break
    code = process.wait(timeout=60)
    os.close(primary)
    return code, output.decode().replace("\r\n", "\n")


async def test_terminal_asks_before_destroying(project: Path, dsn: str) -> None:
    assert run("apply", "--dsn", dsn, cwd=project).returncode == 0
    await send(dsn, "orders__ship")
    write(project, SMALLER)
    args = ["apply", "--dsn", dsn, "--allow-destroy"]

    code, output = _run_on_terminal(args, project, "n")
    assert code == 1
    assert "holds 1 message [destructive]" in output
    assert output.rstrip().endswith("Apply cancelled; nothing was changed.")
    assert "orders__ship" in await queue_names(dsn)

    code, output = _run_on_terminal(args, project, "y")
    assert code == 0, output
    assert output.rstrip().endswith("Applied 2 changes.")
    assert "orders__ship" not in await queue_names(dsn)


def test_concurrent_apply_processes_end_consistent(project: Path, empty_dsn: str) -> None:
    processes = [
        subprocess.Popen(
            [*CLI, "apply", "--dsn", empty_dsn],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    last_lines = sorted(out.splitlines()[-1] for out, _ in outputs)
    assert last_lines == ["Applied 6 changes.", "No changes."]
    clean = run("plan", "--dsn", empty_dsn, "--detailed-exitcode", cwd=project)
    assert clean.returncode == 0


async def test_grant_option(project: Path, dsn: str, admin_dsn: str) -> None:
    bad = run("apply", "--dsn", dsn, "--grant", 'w"; DROP SCHEMA pgmq; --', cwd=project)
    assert bad.returncode == 1
    assert bad.stderr.startswith("orchestrator: error: invalid role name ")
    unknown = run("apply", "--dsn", dsn, "--grant", "no_such_role", cwd=project)
    assert unknown.returncode == 1
    assert "role no_such_role does not exist" in unknown.stderr
    assert await queue_names(dsn) == set()

    async with temporary_role(admin_dsn, [dsn], prefix="cli_worker", login=False) as role:
        done = run("apply", "--dsn", dsn, "--grant", role, cwd=project)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1].startswith(f"Granted role {role} what ")
        conn = await connect(dsn)
        try:
            await conn.execute(f'SET ROLE "{role}"')
            assert await conn.fetchval("SELECT pgmq.send('orders__ship', '{}'::jsonb)") == 1
            await conn.execute("RESET ROLE")
        finally:
            await conn.close()
