"""Commands used wrongly: unknown commands, options, pipelines, steps, run and message ids.

Usage mistakes exit 2, unknown objects exit 1 (README, "Exit codes"); always one line, never
a traceback, and nothing is written.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.badinput.support import DatabaseState, assert_refused, cli, main

USAGE = [
    ((), "the following arguments are required: COMMAND"),
    # A word nothing like a command is not repeated (it may be a pasted password).
    (("frobnicate",), "unknown command; choose from init, validate"),
    (("stauts",), "unknown command 'stauts' (did you mean 'status'?)"),
    (("status", "--frobnicate"), "unrecognized arguments: --frobnicate"),
    (("send",), "the following arguments are required: PIPELINE"),
    (("send", "orders"), "give one payload (JSON or -) or --file PATH"),
    (("send", "orders", "{}", "--file", "x.jsonl"), "give one payload (JSON or -) or --file"),
    (("send", "orders", "{}", "--delay", "soon"), "argument --delay: invalid duration 'soon'"),
    (("send", "orders", "--file", "nowhere.jsonl"), "no such file: nowhere.jsonl"),
    (("run", "--workers", "0"), "argument --workers: must be at least 1, got 0"),
    (("run", "--workers", "-3"), "argument --workers:"),
    (("run", "--concurrency", "lots"), "argument --concurrency: expected a whole number"),
    (("run", "--shutdown-timeout", "-5s"), "argument --shutdown-timeout:"),
    (("run", "--metrics-port", "99999"), "must be a port number"),
    (("run", "--log-level", "loud"), "unknown value for --log-level; choose from debug, info"),
    (("run", "--pipelines", "nowhere"), "no such file or directory: nowhere"),
    (("validate", "nowhere.yaml"), "no such file or directory: nowhere.yaml"),
    (("dlq",), "the following arguments are required: COMMAND"),
    (("dlq", "show", "orders", "abc"), "invalid dead-letter id 'abc': expected a number"),
    (("dlq", "show", "orders", "1", "2"), "2"),
    (("dlq", "list", "orders", "--limit", "0"), "argument --limit"),
    (("dlq", "replay", "orders", "--ids", "x-y"), "invalid dead-letter id 'x-y'"),
    (("dlq", "purge", "orders"), "pass --yes"),
    (("queue", "create"), "the following arguments are required: name"),
    (("status", "--watch", "0"), "argument --watch: must be longer than 0"),
    (("trace",), "the following arguments are required: RUN_ID"),
]


@pytest.mark.parametrize(("args", "fragment"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors(
    shared: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    fragment: str,
) -> None:
    dsn, root = shared
    monkeypatch.setenv("DATABASE_URL", dsn)
    monkeypatch.chdir(root)
    before = DatabaseState.read(dsn)
    assert_refused(main(*args), 2, fragment)
    assert before.differences(DatabaseState.read(dsn)) == {}


def test_a_usage_error_as_a_user_sees_it(tmp_path: Path) -> None:
    result = cli("frobnicate", cwd=tmp_path)
    assert_refused(result, 2, "unknown command; choose from")
    assert result.out == ""
    # plan --detailed-exitcode keeps 2 for "changes pending": usage errors are 1 there.
    detailed = cli("plan", "--detailed-exitcode", "--frobnicate", cwd=tmp_path)
    assert_refused(detailed, 1, "unrecognized arguments: --frobnicate")


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_a_missing_pipelines_folder_is_a_usage_error(tmp_path: Path, command: str) -> None:
    """README: exit 2 for a missing path, like `validate` and `run`."""
    result = cli(
        command, "--pipelines", "nowhere", "--dsn", "postgresql://127.0.0.1:1/x", cwd=tmp_path
    )
    assert_refused(result, 2, "nowhere")


RUN = str(uuid.UUID(int=42))
UNKNOWN = [
    (("send", "nope", "{}"), "pipeline 'nope' is not applied; run orchestrator apply"),
    (("status", "nope"), "unknown pipeline 'nope' (applied: orders)"),
    (("dlq", "list", "nope"), "unknown pipeline 'nope' (applied: orders)"),
    (("dlq", "show", "nope", "1"), "nope"),
    (("dlq", "replay", "nope", "--all"), "unknown pipeline 'nope' (applied: orders)"),
    (("dlq", "purge", "nope", "--yes"), "unknown pipeline 'nope' (applied: orders)"),
    (("dlq", "list", "orders", "--step", "nope"), "nope"),
    (("dlq", "show", "orders", "999999"), "no dead letter 999999 in pipeline 'orders'"),
    (("trace", RUN), f"no run {RUN}"),
    (("trace", "42"), "malformed run id '42'"),
    (("trace", "not-a-uuid"), "malformed run id 'not-a-uuid'"),
    (("trace", RUN, "--pipeline", "nope"), "nope"),
    (("queue", "drop", "nope"), 'queue "nope" does not exist'),
    (("queue", "purge", "nope"), 'queue "nope" does not exist'),
    (("queue", "metrics", "nope"), 'queue "nope" does not exist'),
]


@pytest.mark.parametrize(("args", "fragment"), UNKNOWN, ids=[" ".join(a) for a, _ in UNKNOWN])
def test_unknown_objects(shared: tuple[str, Path], args: tuple[str, ...], fragment: str) -> None:
    dsn, _ = shared
    before = DatabaseState.read(dsn)
    assert_refused(main(*args, "--dsn", dsn), 1, fragment)
    assert before.differences(DatabaseState.read(dsn)) == {}


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        (("--pipeline", "nope"), "unknown pipeline 'nope'; known pipelines: 'orders'"),
        (("--step", "nope"), "unknown step 'nope'; known steps: 'orders.receive', 'orders.ship'"),
        (("--step", "orders.nope"), "unknown step 'orders.nope'"),
        (("--pipeline", "orders", "--step", "other.receive"), "unknown step 'other.receive'"),
    ],
)
def test_run_with_unknown_pipelines_and_steps(
    shared: tuple[str, Path], option: tuple[str, ...], fragment: str
) -> None:
    dsn, root = shared
    result = cli("run", *option, "--drain", "--dsn", dsn, cwd=root)
    assert_refused(result, 2, fragment)
