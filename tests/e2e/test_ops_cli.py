"""`orchestrator status`, `dlq`, `trace` and `maintain` run as a user runs them: subprocesses
against a real database holding the data the runtime writes."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from orchestrator.spec import Pipeline
from tests.integration.ops import support

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "orchestrator"]


def run(*args: str, stdin: int | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NO_COLOR")}
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
    )


def one_line_error(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    """Exit `code`, and exactly one line on stderr containing `text`: never a traceback."""
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stderr.startswith("orchestrator") and done.stderr.count("\n") == 1, done.stderr
    assert text in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
async def orders(conn: asyncpg.Connection) -> Pipeline:
    return await support.provision(conn, support.pipeline(support.ORDERS))


async def test_status_text_and_json(
    conn: asyncpg.Connection, dsn: str, orders: Pipeline, tmp_path: Path
) -> None:
    run_id = support.new_run()
    await support.complete_run(conn, orders, run_id)
    await support.send(conn, orders, "fetch", support.new_run())
    await support.dead_letter(conn, orders, "sync", run_id)

    done = run("status", "--dsn", dsn, "--pipelines", str(tmp_path))

    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[0].startswith("orders  (applied ")
    assert lines[1].split()[:3] == ["step", "waiting", "visible"]
    fetch = lines[2].split()
    assert fetch[:3] == ["fetch", "1", "1"]
    assert (
        "dead letters (orders_dlq): 1 (sync 1; see `orchestrator dlq list orders`)" in done.stdout
    )
    assert "schedule every_five (*/5 * * * *, UTC): next tick" in done.stdout
    assert "\x1b[" not in done.stdout  # no colour off a terminal

    data = json.loads(run("status", "orders", "--dsn", dsn, "--json").stdout)
    [pipeline] = data["pipelines"]
    steps = {s["step"]: s for s in pipeline["steps"]}
    assert steps["fetch"]["waiting"] == 1 and steps["fetch"]["handed_off"] == 1
    assert steps["sync"]["dead_letters"] == 1 and steps["sync"]["attention"] == ["dead letters"]
    assert pipeline["dead_letter_queue"]["depth"] == 1
    assert pipeline["changed_since_apply"] is None


async def test_status_flags_a_changed_pipeline_file(
    dsn: str, orders: Pipeline, tmp_path: Path
) -> None:
    (tmp_path / "orders.yaml").write_text(support.ORDERS.replace("30s", "45s"))
    done = run("status", "--dsn", dsn, "--pipelines", str(tmp_path))
    assert "pipeline file changed since apply: run `orchestrator apply`" in done.stdout


async def test_status_watch_until_interrupted(dsn: str, orders: Pipeline) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    with subprocess.Popen(
        [*CLI, "status", "--dsn", dsn, "--json", "--watch", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    ) as watcher:
        assert watcher.stdout is not None
        frames = [json.loads(watcher.stdout.readline()) for _ in range(3)]
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    assert "Traceback" not in err
    assert [f["pipelines"][0]["pipeline"] for f in frames] == ["orders"] * 3
    assert frames[0]["measured_at"] < frames[2]["measured_at"]


async def test_status_errors(dsn: str, empty_dsn: str, orders: Pipeline) -> None:
    one_line_error(run("status", "nope", "--dsn", dsn), 1, "unknown pipeline 'nope'")
    one_line_error(run("status", "--dsn", empty_dsn), 4, "run `orchestrator apply`")
    one_line_error(
        run("status", "--dsn", "postgresql://nobody@127.0.0.1:1/none"), 3, "cannot connect"
    )
    one_line_error(run("status", "--dsn", dsn, "--watch", "soon"), 2, "invalid duration 'soon'")


async def test_dlq_list_and_show(conn: asyncpg.Connection, dsn: str, orders: Pipeline) -> None:
    run_id = support.new_run()
    first = await support.dead_letter(conn, orders, "sync", run_id, {"order": 7})
    await support.dead_letter(conn, orders, "label", run_id, error_type="ValueError")

    listing = run("dlq", "list", "orders", "--dsn", dsn)
    assert listing.returncode == 0, listing.stderr
    rows = listing.stdout.splitlines()
    assert rows[0].split() == ["id", "step", "run", "attempts", "failed", "error"]
    assert [r.split()[1] for r in rows[1:]] == ["label", "sync"]
    assert "TimeoutError: SAP did not answer within 30s" in rows[2]

    only = json.loads(run("dlq", "list", "orders", "--step", "sync", "--dsn", dsn, "--json").stdout)
    assert only["total"] == 1 and only["dead_letters"][0]["id"] == first
    recent = run("dlq", "list", "orders", "--since", "1h", "--error", "valueerror", "--dsn", dsn)
    assert "ValueError" in recent.stdout and "TimeoutError" not in recent.stdout
    limited = run("dlq", "list", "orders", "--limit", "1", "--dsn", dsn)
    assert "1 of 2 shown (newest first)" in limited.stdout

    shown = run("dlq", "show", str(first), "--dsn", dsn)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"dead letter {first} of pipeline orders")
    assert "Traceback (most recent call last):" in shown.stdout
    assert '"order": 7' in shown.stdout
    as_json = json.loads(run("dlq", "show", "orders", str(first), "--dsn", dsn, "--json").stdout)
    assert as_json["payload"] == {"order": 7} and as_json["run_id"] == run_id


async def test_dlq_bad_input(conn: asyncpg.Connection, dsn: str, orders: Pipeline) -> None:
    one_line_error(run("dlq", "list", "nope", "--dsn", dsn), 1, "unknown pipeline 'nope'")
    one_line_error(
        run("dlq", "list", "orders", "--step", "synk", "--dsn", dsn),
        1,
        "did you mean 'sync'?",
    )
    one_line_error(
        run("dlq", "list", "orders", "--since", "5 fortnights", "--dsn", dsn),
        2,
        "invalid duration",
    )
    one_line_error(run("dlq", "show", "404", "--dsn", dsn), 1, "no dead letter 404")
    one_line_error(run("dlq", "show", "orders", "x1", "--dsn", dsn), 2, "invalid dead-letter id")
    one_line_error(run("dlq", "replay", "orders", "--dsn", dsn), 2, "--all")
    one_line_error(run("dlq", "replay", "orders", "--ids", "a", "--dsn", dsn), 2, "invalid")
    one_line_error(run("dlq", "purge", "orders", "--before", "x", "--dsn", dsn), 2, "invalid")


async def test_dlq_replay_and_repeat(conn: asyncpg.Connection, dsn: str, orders: Pipeline) -> None:
    run_id = support.new_run()
    dead = [await support.dead_letter(conn, orders, "sync", run_id, {"n": n}) for n in range(3)]

    done = run("dlq", "replay", "orders", "--ids", f"{dead[0]}-{dead[1]}", "--dsn", dsn)
    assert (done.returncode, done.stdout) == (0, "replayed 2 dead letters of orders (sync: 2)\n")
    again = run("dlq", "replay", "orders", "--ids", str(dead[0]), "--dsn", dsn)
    assert again.returncode == 1
    assert again.stdout.splitlines() == [
        "replayed 0 dead letters of orders",
        f"not in the dead-letter queue (already replayed or purged?): {dead[0]}",
    ]
    rest = json.loads(run("dlq", "replay", "orders", "--all", "--dsn", dsn, "--json").stdout)
    assert rest["replayed"] == 1 and rest["by_step"] == {"sync": 1}
    queued = await conn.fetch("SELECT message FROM pgmq.q_orders__sync ORDER BY msg_id")
    assert [r["message"]["n"] for r in queued] == [0, 1, 2]


async def test_dlq_purge_needs_yes_off_a_terminal(
    conn: asyncpg.Connection, dsn: str, orders: Pipeline
) -> None:
    await support.dead_letter(conn, orders, "sync", support.new_run())
    one_line_error(run("dlq", "purge", "orders", "--dsn", dsn), 2, "pass --yes")
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_orders_dlq") == 1
    done = run("dlq", "purge", "orders", "--before", "1h", "--yes", "--dsn", dsn)
    assert done.stdout == "purged 0 dead letters of orders\n"
    done = run("dlq", "purge", "orders", "--yes", "--dsn", dsn, "--json")
    assert json.loads(done.stdout) == {"pipeline": "orders", "purged": 1}


@pytest.mark.parametrize(("answer", "left"), [("n", 1), ("y", 0)])
async def test_dlq_purge_asks_on_a_terminal(
    conn: asyncpg.Connection, dsn: str, orders: Pipeline, answer: str, left: int
) -> None:
    await support.dead_letter(conn, orders, "sync", support.new_run())
    controller, terminal = pty.openpty()
    try:
        os.write(controller, f"{answer}\n".encode())
        done = run("dlq", "purge", "orders", "--dsn", dsn, stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert "delete 1 dead letter of orders? [y/N]" in done.stderr
    assert done.returncode == left
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_orders_dlq") == left


async def test_trace(conn: asyncpg.Connection, dsn: str, orders: Pipeline) -> None:
    run_id = support.new_run()
    ids = await support.complete_run(conn, orders, run_id)

    done = run("trace", run_id, "--dsn", dsn)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"run {run_id}  done  pipeline orders  started ")
    assert lines[1].split() == [
        "step", "msg", "state", "sent", "started", "finished", "took", "attempts"
    ]  # fmt: skip
    assert [line.split()[:3] for line in lines[2:]] == [
        [step, str(ids[step]), "done"] for step in ("fetch", "label", "sync", "report")
    ]
    data = json.loads(run("trace", run_id, "--dsn", dsn, "--json").stdout)
    assert data["state"] == "done" and len(data["messages"]) == 4

    one_line_error(run("trace", "not-a-uuid", "--dsn", dsn), 1, "malformed run id 'not-a-uuid'")
    unknown = support.new_run()
    one_line_error(run("trace", unknown, "--dsn", dsn), 1, f"no run {unknown}")


async def test_maintain(conn: asyncpg.Connection, dsn: str, orders: Pipeline) -> None:
    ids = await support.complete_run(conn, orders, support.new_run())
    await conn.execute(
        "UPDATE pgmq.a_orders__fetch SET archived_at = archived_at - interval '2 days'"
    )
    done = run("maintain", "--dsn", dsn)
    assert done.returncode == 0, done.stderr
    assert "archive retention: 1 archived message deleted" in done.stdout
    assert "  orders__fetch: 1 older than 1d" in done.stdout
    data = json.loads(run("maintain", "--dsn", dsn, "--json").stdout)
    assert data["problems"] == [] and data["joins_deleted"] == 0
    assert ids["fetch"] not in [
        r["msg_id"] for r in await conn.fetch("SELECT msg_id FROM pgmq.a_orders__fetch")
    ]


async def test_after_apply_of_the_repository_pipelines(dsn: str) -> None:
    """The operations read what `orchestrator apply` writes (partitioned queues, schedules)."""
    applied = run("apply", "--dsn", dsn, "--pipelines", "pipelines")
    assert applied.returncode == 0, applied.stderr
    status = json.loads(run("status", "--dsn", dsn, "--json").stdout)
    assert [p["pipeline"] for p in status["pipelines"]] == ["reports", "work_orders"]
    steps = [s["step"] for s in status["pipelines"][1]["steps"]]
    assert steps == ["import", "barcode", "sap_sync", "email", "report"]
    assert status["pipelines"][0]["schedules"][0]["timezone"] == "Europe/Berlin"
    maintained = run("maintain", "--dsn", dsn, "--json")
    assert maintained.returncode == 0, maintained.stderr
    notes = {a["note"] for a in json.loads(maintained.stdout)["archives"]}
    assert notes == {None, "partitioned"}


FLAKY = """
pipeline: flaky
defaults:
  visibility_timeout: 10s
  timeout: 5s
  retry: {max_attempts: 2, backoff: constant, initial: 100ms, jitter: false}
steps:
  first:
    handler: flaky_steps:first
    next: [second]
  second:
    handler: flaky_steps:second
"""

FLAKY_STEPS = """
from pathlib import Path


def first(payload):
    return payload


def second(payload):
    if payload["fail"] and not Path("fixed").exists():
        raise ValueError("the order has no customer")
    return {"done": True}
"""


def test_with_the_runtime(dsn: str, tmp_path: Path) -> None:
    """Dead letters, traces and status of what real workers did; a replay after the fix."""
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "flaky.yaml").write_text(FLAKY)
    (tmp_path / "flaky_steps.py").write_text(FLAKY_STEPS)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = run(*args, "--dsn", dsn, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done

    cli("apply")
    failing = cli("send", "flaky", '{"fail": true}').stdout.strip()
    passing = cli("send", "flaky", '{"fail": false}').stdout.strip()
    cli("run", "--drain", "--log-level", "error")

    status = json.loads(cli("status", "--json").stdout)
    steps = {s["step"]: s for s in status["pipelines"][0]["steps"]}
    assert steps["first"]["handed_off"] == 2
    assert (steps["second"]["handed_off"], steps["second"]["dead_letters"]) == (1, 1)
    assert steps["second"]["failures"] == 2  # both attempts of the dead-lettered message
    listing = json.loads(cli("dlq", "list", "flaky", "--json").stdout)
    [letter] = listing["dead_letters"]
    assert (letter["step"], letter["run_id"], letter["attempts"]) == ("second", failing, 2)
    assert letter["error"]["type"] == "ValueError"
    shown = cli("dlq", "show", str(letter["id"])).stdout
    assert "ValueError: the order has no customer" in shown and "Traceback" in shown

    trace = json.loads(cli("trace", failing, "--json").stdout)
    assert trace["state"] == "failed"
    assert [(m["step"], m["state"]) for m in trace["messages"]] == [
        ("first", "done"),
        ("second", "dead letter"),
    ]
    assert [e["attempt"] for e in trace["messages"][1]["errors"]] == [1, 2]
    assert json.loads(cli("trace", passing, "--json").stdout)["state"] == "done"

    (tmp_path / "fixed").write_text("")
    assert cli("dlq", "replay", "flaky", "--all").stdout.startswith("replayed 1 dead letter")
    cli("run", "--drain", "--log-level", "error")
    replayed = json.loads(cli("trace", failing, "--json").stdout)
    assert replayed["state"] == "done"
    second = [m for m in replayed["messages"] if m["step"] == "second"]
    assert [(m["state"], m["replayed_from"], m["attempts"]) for m in second] == [
        ("done", letter["id"], 1)
    ]
