"""The command line as an operator meets it, run as the installed `orchestrator` command.

One test per defect of the command-line review: options before or after the command and from
the environment, --version, "did you mean", swapped arguments, closed pipes, the project root
of the embedded server, validator wording, status on a narrow terminal, the facts dlq and trace
print, hints where users get stuck, and the new commands (init, graph, completion,
send --wait, run --drain progress).
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import pytest

from orchestrator.spec import Pipeline
from tests.badinput.support import write_project
from tests.integration.ops import support
from tests.security.test_least_privilege import PASSWORD, role  # noqa: F401
from tests.support.pg import with_login

SCRIPT = Path(sys.executable).with_name("orchestrator")
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "orchestrator"]


def env_of(**extra: str) -> dict[str, str]:
    drop = ("DATABASE_URL", "ORCHESTRATOR_DSN", "ORCHESTRATOR_WORKER", "NO_COLOR")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("ORCH")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def run(
    *args: str, cwd: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env_of(**env),
        stdin=subprocess.DEVNULL,
    )


def one_error(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("orchestrator"), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project")


@pytest.fixture
async def orders(conn: asyncpg.Connection) -> Pipeline:
    return await support.provision(conn, support.pipeline(support.ORDERS))


# -- options -----------------------------------------------------------------------------------


def test_options_go_before_or_after_the_command_or_in_the_environment(project: Path) -> None:
    after = run("validate", "--json", cwd=project)
    before = run("--json", "validate", cwd=project)
    environment = run("validate", cwd=project, ORCHESTRATOR_JSON="1")
    old_flag = run("validate", "--format", "json", cwd=project)
    for done in (after, before, environment, old_flag):
        assert (done.returncode, json.loads(done.stdout)) == (0, []), done.stderr

    elsewhere = project.parent
    graphs = [
        run("--pipelines", str(project / "pipelines"), "graph", "orders", cwd=elsewhere),
        run("graph", "orders", "--pipelines", str(project / "pipelines"), cwd=elsewhere),
        run("graph", "orders", cwd=elsewhere, ORCHESTRATOR_PIPELINES=str(project / "pipelines")),
    ]
    for done in graphs:
        assert done.returncode == 0, done.stderr
        assert '"receive" -> "ship";' in done.stdout
    # Every command option reads ORCHESTRATOR_<COMMAND>_<OPTION>; the command line wins.
    mermaid = run("graph", "orders", cwd=project, ORCHESTRATOR_GRAPH_FORMAT="mermaid")
    assert mermaid.stdout.startswith("flowchart LR")
    dot = run(
        "graph", "orders", "--format", "dot", cwd=project, ORCHESTRATOR_GRAPH_FORMAT="mermaid"
    )
    assert dot.stdout.startswith('digraph "orders"')
    one_error(
        run("graph", "orders", cwd=project, ORCHESTRATOR_GRAPH_FORMAT="png"),
        2,
        "$ORCHESTRATOR_GRAPH_FORMAT: invalid choice",
    )

    helped = run("run", "--help", cwd=project)
    for variable in ("$ORCHESTRATOR_DSN or $DATABASE_URL", "$ORCHESTRATOR_PIPELINES"):
        assert variable in " ".join(helped.stdout.split())
    assert "$ORCHESTRATOR_RUN_WORKERS" in helped.stdout
    assert "ORCHESTRATOR_DLQ_PURGE_YES" not in run("dlq", "purge", "--help", cwd=project).stdout


def test_version_with_and_without_a_database(project: Path, dsn: str) -> None:
    alone = run("--version", cwd=project, ORCHESTRATOR_HOME=str(project / "home"))
    assert alone.returncode == 0, alone.stderr
    assert re.match(r"orchestrator \d+\.\d+\.\d+ \(queue layer \d+, store \d+\)\n", alone.stdout)
    assert "embedded server is not running" in alone.stdout
    assert not (project / "home").exists()  # asking for the version starts no server
    reached = run("--dsn", dsn, "--version", cwd=project)
    assert re.search(r"^database: queue layer \d+, store \d+$", reached.stdout, re.M)


def test_mistakes_are_said_in_words(project: Path) -> None:
    one_error(run("stauts", cwd=project), 2, "unknown command 'stauts' (did you mean 'status'?)")
    one_error(run("dlq", "lsit", cwd=project), 2, "(did you mean 'list'?)")
    one_error(
        run("send", '{"a": 1}', "signup", cwd=project),
        2,
        "the pipeline comes first, then the payload: orchestrator send signup '{...}'",
    )
    one_error(run("run", "signup", cwd=project), 2, "only some pipelines: --pipeline signup")
    one_error(
        run("status", "--dsn", "postgresql://app@127.0.0.1:fivefour/app", cwd=project),
        1,
        "port that is not a number",
    )


# -- pipes -------------------------------------------------------------------------------------


def closed_pipe(args: Sequence[str], cwd: Path) -> tuple[int, str]:
    """Run with stdout a pipe whose reading end is already closed: every write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [*CLI, *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            cwd=cwd,
            env=env_of(),
            stdin=subprocess.DEVNULL,
        )
    finally:
        os.close(write_end)
    return done.returncode, done.stderr


async def test_a_closed_pipe_ends_every_command_quietly(
    project: Path, conn: asyncpg.Connection, dsn: str, orders: Pipeline
) -> None:
    run_id = support.new_run()
    await support.complete_run(conn, orders, run_id)
    await support.dead_letter(conn, orders, "sync", run_id)
    commands = [
        ["schema"],
        ["completion", "bash"],
        ["validate", "--json"],
        ["graph", "orders"],
        ["status", "--dsn", dsn],
        ["status", "--json", "--dsn", dsn],
        ["dlq", "list", "orders", "--dsn", dsn],
        ["dlq", "show", "orders", "1", "--dsn", dsn],
        ["trace", run_id, "--dsn", dsn],
        ["queue", "list", "--dsn", dsn],
        ["queue", "metrics", "--dsn", dsn],
    ]
    for args in commands:
        code, stderr = closed_pipe(args, project)
        assert code in (0, 141), (args, code, stderr)
        assert stderr == "", (args, stderr)


# -- the embedded server -----------------------------------------------------------------------


def test_the_embedded_server_belongs_to_the_project_root(project: Path) -> None:
    deep = project / "pipelines" / "sub"
    deep.mkdir()
    done = run("db", "status", "--json", cwd=deep)
    assert json.loads(done.stdout)["pgdata"] == str(project / ".orchestrator" / "pgdata")
    assert done.returncode == 1  # not running, and nothing was started
    assert not (project / ".orchestrator").exists()
    moved = run("db", "status", "--json", cwd=deep, ORCHESTRATOR_HOME=str(project / "elsewhere"))
    assert json.loads(moved.stdout)["pgdata"] == str(project / "elsewhere" / "pgdata")


# -- validation messages -----------------------------------------------------------------------

SLOPPY = """\
pipeline: orders
steps:
  receive:
    handler: handlers.orders:receive
    retry: {max_attempts: 0}
    concurrency: many
    next: [ship]
  ship:
    handler: handlers.orders:ship
    timeout: 30s 5m
    delay: 0.1ms
    visibility_timeout: "30"
"""


def test_validation_messages_name_the_key(project: Path) -> None:
    (project / "pipelines" / "orders.yaml").write_text(SLOPPY)
    done = run("validate", cwd=project)
    assert done.returncode == 1
    errors = done.stderr
    assert "5:27: error: retry.max_attempts must be at least 1, got 0" in errors
    assert "6:18: error: concurrency: expected an integer, got the string 'many'" in errors
    assert "timeout: invalid duration '30s 5m': write its parts from the largest unit" in errors
    assert "delay: duration '0.1ms' is shorter than 1ms" in errors
    assert (
        "visibility_timeout: invalid duration '30': a quoted number is text, not seconds; "
        "write 30 without quotes, or 30s"
    ) in errors
    listed = json.loads(run("validate", "--json", cwd=project).stdout)
    messages = {d["key"]: d["message"] for d in listed}
    assert messages["steps.receive.retry.max_attempts"].startswith("retry.max_attempts must")


# -- status, dlq, trace ------------------------------------------------------------------------


def on_a_terminal(args: Sequence[str], cwd: Path, columns: int) -> str:
    """Run with stdout and stderr on a pseudo-terminal `columns` wide; what it printed."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in env_of(NO_COLOR="1").items() if k not in ("COLUMNS", "LINES")}
    with subprocess.Popen(
        [*CLI, *args], stdout=terminal, stderr=terminal, cwd=cwd, env=env
    ) as proc:
        os.close(terminal)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            output += chunk
        proc.wait(timeout=120)
    os.close(controller)
    return output.decode(errors="replace")


async def test_status_fits_the_terminal(project: Path, dsn: str, orders: Pipeline) -> None:
    narrow = on_a_terminal(["status", "--dsn", dsn], project, 80)
    lines = narrow.splitlines()
    table = lines[1 : next(i for i, line in enumerate(lines) if "dead letters (" in line)]
    assert len(table) == 5 and max(len(line.rstrip("\r")) for line in table) <= 80, narrow
    assert "--wide shows all" in narrow and " size" not in narrow
    wide = on_a_terminal(["status", "--wide", "--dsn", dsn], project, 80)
    assert " size " in wide and " dead" in wide


async def test_dlq_list_shows_when_the_attempt_failed(
    project: Path, conn: asyncpg.Connection, dsn: str, orders: Pipeline
) -> None:
    await support.dead_letter(conn, orders, "sync", support.new_run())
    # The dead letter entered the queue long ago; the attempt failed now (failed_at).
    await conn.execute("UPDATE pgmq.q_orders_dlq SET enqueued_at = '2001-01-01T00:00:00Z'")
    listed = run("dlq", "list", "orders", "--dsn", dsn, cwd=project)
    shown = run("dlq", "show", "orders", "1", "--dsn", dsn, cwd=project)
    assert listed.returncode == shown.returncode == 0, listed.stderr + shown.stderr
    assert "2001-" not in listed.stdout
    today = time.strftime("%Y-%m-%d")
    failed = re.search(r"failed at:\s+(\S+ \S+)", shown.stdout)
    assert failed is not None and failed.group(1).startswith(today)
    assert failed.group(1) in listed.stdout  # one format in both


async def test_trace_never_says_done_without_a_record_of_the_last_steps(
    project: Path, conn: asyncpg.Connection, dsn: str, orders: Pipeline
) -> None:
    run_id = support.new_run()
    fetched = await support.send(conn, orders, "fetch", run_id)
    await support.archive(conn, orders.queue_name("fetch"), fetched)
    done = run("trace", run_id, "--dsn", dsn, cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"run {run_id}  unknown  pipeline orders")
    assert "no record of step label, sync, report" in done.stdout
    data = json.loads(run("trace", run_id, "--json", "--dsn", dsn, cwd=project).stdout)
    assert (data["state"], data["unrecorded_steps"]) == ("unknown", ["label", "sync", "report"])


# -- hints -------------------------------------------------------------------------------------


async def test_sending_to_a_pipeline_not_applied_lists_the_applied_ones(
    project: Path, dsn: str, orders: Pipeline
) -> None:
    one_error(
        run("send", "ordres", "{}", "--dsn", dsn, cwd=project), 1, "applied pipelines: orders"
    )


async def test_a_role_without_grants_is_told_about_apply_grant(
    project: Path,
    dsn: str,
    orders: Pipeline,
    role: str,  # noqa: F811
) -> None:
    as_role = with_login(dsn, role, PASSWORD)
    for args in (["status"], ["queue", "list"], ["dlq", "list", "orders"]):
        line = one_error(run(*args, "--dsn", as_role, cwd=project), 1, "permission denied")
        assert "orchestrator apply --grant ROLE" in line
        assert PASSWORD not in line


async def test_queues_of_an_applied_pipeline_need_yes(
    project: Path, conn: asyncpg.Connection, dsn: str, orders: Pipeline
) -> None:
    await support.send(conn, orders, "fetch", support.new_run())
    for action in ("purge", "drop"):
        one_error(
            run("queue", action, "orders__fetch", "--dsn", dsn, cwd=project),
            2,
            "queue orders__fetch belongs to pipeline orders",
            f"{action} it with --yes",
        )
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_orders__fetch") == 1
    purged = run("queue", "purge", "orders__fetch", "--yes", "--dsn", dsn, cwd=project)
    assert purged.stdout == "purged 1 message from queue orders__fetch\n", purged.stderr


async def test_apply_json(project: Path, dsn: str) -> None:
    done = run("apply", "--json", "--dsn", dsn, cwd=project)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)["plan"]
    again = json.loads(run("apply", "--json", "--dsn", dsn, cwd=project).stdout)["plan"]
    assert plan != again  # the first apply changed things, the second one nothing


# -- new commands ------------------------------------------------------------------------------


def test_graph_formats_and_unknown_pipeline(project: Path) -> None:
    dot = run("graph", "orders", cwd=project)
    assert dot.stdout == (
        'digraph "orders" {\n  rankdir=LR;\n  node [shape=box];\n'
        '  "receive" [style=bold];\n  "ship";\n  "receive" -> "ship";\n}\n'
    )
    mermaid = run("graph", "orders", "--format", "mermaid", cwd=project)
    assert mermaid.stdout == (
        'flowchart LR\n  receive(["receive"])\n  ship["ship"]\n  receive --> ship\n'
    )
    one_error(run("graph", "ordres", cwd=project), 2, "no pipeline 'ordres'", "did you mean")


def test_bash_completion_completes_commands_and_options(project: Path) -> None:
    script = run("completion", "bash", cwd=project).stdout
    probe = (
        f"{script}\n"
        "COMP_WORDS=(orchestrator dl); COMP_CWORD=1; _orchestrator; echo ${COMPREPLY[@]}\n"
        "COMP_WORDS=(orchestrator dlq re); COMP_CWORD=2; _orchestrator; echo ${COMPREPLY[@]}\n"
        "COMP_WORDS=(orchestrator --json dlq replay --a); COMP_CWORD=4; _orchestrator;"
        " echo ${COMPREPLY[@]}\n"
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["dlq", "replay", "--all"], done.stderr
    zsh = run("completion", "zsh", cwd=project).stdout
    assert zsh.startswith("autoload -U +X bashcompinit && bashcompinit\n")


HELLO_FAILING = """\
pipeline: broken
defaults:
  retry: {max_attempts: 1}
steps:
  explode:
    handler: handlers.hello:explode
"""


async def test_init_then_send_wait_and_drain_progress(tmp_path: Path, dsn: str) -> None:
    root = tmp_path / "starter"
    created = run("init", str(root), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "created " + str(root / "pipelines" / "hello.yaml") in created.stdout
    assert (
        (root / "pipelines" / "hello.yaml")
        .read_text()
        .startswith("# yaml-language-server: $schema=../schemas/pipeline.schema.json")
    )
    assert "--import-handlers" in (root / ".github" / "workflows" / "pipelines.yml").read_text()
    one_error(run("init", str(root), cwd=tmp_path), 1, "already has pipelines/hello.yaml")

    checked = run("validate", "--import-handlers", cwd=root)
    assert (checked.returncode, checked.stdout) == (0, "1 pipeline valid (2 steps)\n")

    (root / "pipelines" / "broken.yaml").write_text(HELLO_FAILING)
    with (root / "handlers" / "hello.py").open("a") as handlers:
        handlers.write("\n\nasync def explode(payload, ctx):\n    raise ValueError('no')\n")
    assert run("apply", "--dsn", dsn, cwd=root).returncode == 0

    workers = subprocess.Popen(
        [*CLI, "run", "--dsn", dsn],
        cwd=root,
        env=env_of(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.PIPE,
    )
    try:
        good = run("send", "hello", '{"name": "you"}', "--wait", "--dsn", dsn, cwd=root)
        assert good.returncode == 0, good.stderr
        [run_id] = good.stdout.split()
        assert good.stderr == f"{run_id} done\n"
        bad = run("send", "broken", "{}", "--wait", "--json", "--dsn", dsn, cwd=root)
        assert bad.returncode == 1, bad.stderr
        [outcome] = json.loads(bad.stdout)
        assert outcome["state"] == "failed"
    finally:
        workers.send_signal(signal.SIGTERM)
        workers.wait(timeout=120)

    lingering = run(
        "send", "hello", "{}", "--wait", "--timeout", "1", "--dsn", dsn, cwd=root, timeout=120
    )
    assert lingering.returncode == 1
    assert lingering.stderr.endswith("running (timed out)\n"), lingering.stderr

    payloads = "".join(json.dumps({"name": f"n{i}"}) + "\n" for i in range(30))
    (root / "runs.jsonl").write_text(payloads)
    assert run("send", "hello", "--file", "runs.jsonl", "--dsn", dsn, cwd=root).returncode == 0
    shown = on_a_terminal(["run", "--drain", "--pipeline", "hello", "--dsn", dsn], root, 160)
    assert "drain [" in shown and "runs finished 31" in shown, shown
