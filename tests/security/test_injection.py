"""An injection corpus through every door: pipeline files, CLI arguments, the Python API and
the SQL API a worker role may call.

Quotes, semicolons, comments, dollar quotes, format directives, template syntax, NUL,
newlines, unicode look-alikes and over-long names are refused before they reach SQL text (or
reach it only as parameters). After every attempt the database is exactly as before: same
schemas, relations, functions, triggers, roles, and the same rows (the `canary` table
included); for the Python API, no statement text contains the name at all.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import asyncpg
import pytest

from orchestrator.db import connect
from orchestrator.errors import OrchestratorError
from tests.badinput.support import PIPELINE, DatabaseState, cli, lines_of, main
from tests.security.conftest import CORPUS

IDS = list(CORPUS)
EVIL = [CORPUS[k] for k in IDS]


# -- pipeline files ----------------------------------------------------------------------------


def _slots(evil: str) -> dict[str, str]:
    """A valid pipeline file with `evil` put in one naming slot at a time."""
    name = json.dumps(evil)
    return {
        "pipeline": PIPELINE.replace("pipeline: orders", f"pipeline: {name}"),
        "step": PIPELINE.replace("  ship:", f"  {name}:").replace("[ship]", f"[{name}]"),
        "next": PIPELINE.replace("[ship]", f"[ship, {name}]"),
        "after": PIPELINE + f"    after: [{name}]\n",
        "dead_letter": PIPELINE + f"dead_letter: {name}\n",
        "handler": PIPELINE.replace("handlers.orders:ship", evil.replace("\n", " ") or "''"),
    }


@pytest.fixture(scope="module")
def evil_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("evil") / "pipelines"
    folder.mkdir()
    for key, evil in CORPUS.items():
        for slot, text in _slots(evil).items():
            (folder / f"{key}.{slot}.yaml").write_text(text, encoding="utf-8")
    return folder


def test_every_evil_name_in_a_pipeline_file_is_refused(evil_files: Path) -> None:
    result = cli("validate", str(evil_files), cwd=evil_files.parent, timeout=120)
    assert result.code == 1
    assert "Traceback" not in result.text
    refused = {line.split(":", 1)[0] for line in lines_of(result.err)}
    files = {str(p) for p in evil_files.iterdir()}
    assert files - refused == set(), "accepted: " + ", ".join(sorted(files - refused)[:10])
    assert result.out.strip().endswith("0 pipelines valid (0 steps)")


def test_apply_of_evil_pipeline_files_changes_nothing(evil_files: Path, empty_dsn: str) -> None:
    before = DatabaseState.read(empty_dsn)
    result = cli("apply", "--dsn", empty_dsn, cwd=evil_files.parent, timeout=120)
    assert result.code == 1
    assert "Traceback" not in result.text
    assert before.differences(DatabaseState.read(empty_dsn)) == {}


# -- command-line arguments --------------------------------------------------------------------

RUN_ID = str(uuid.UUID(int=1))


def _commands(evil: str) -> list[tuple[str, ...]]:
    return [
        ("queue", "create", evil),
        ("queue", "drop", evil),
        ("queue", "purge", evil),
        ("queue", "metrics", evil),
        ("send", evil, "{}"),
        ("status", evil),
        ("dlq", "list", evil),
        ("dlq", "list", "orders", "--step", evil),
        ("dlq", "show", evil, "1"),
        ("dlq", "replay", evil, "--all"),
        ("dlq", "replay", "orders", "--step", evil),
        ("dlq", "purge", evil, "--yes"),
        ("dlq", "purge", "orders", "--step", evil, "--yes"),
        ("trace", evil),
        ("trace", RUN_ID, "--pipeline", evil),
        ("apply", "--grant", evil),
    ]


# A command line cannot carry NUL (exec refuses it), so the CLI corpus leaves it out.
CLI_IDS = [k for k in IDS if "\x00" not in CORPUS[k]]
CLI_EVIL = [CORPUS[k] for k in CLI_IDS]


@pytest.mark.parametrize("evil", CLI_EVIL, ids=CLI_IDS)
def test_evil_cli_arguments_are_refused_and_change_nothing(
    target: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, evil: str
) -> None:
    dsn, root = target
    monkeypatch.chdir(root)
    monkeypatch.setenv("DATABASE_URL", dsn)
    before = DatabaseState.read(dsn)
    accepted, multiline = [], []
    for command in _commands(evil):
        result = main(*command)
        if result.code == 0:
            accepted.append((command, result.text))
        elif len(lines_of(result.err)) != 1:
            multiline.append((command[:2], result.err))
    # A filter value is data, not a name: it is matched, never executed.
    listed = main("dlq", "list", "orders", "--error", evil)
    assert listed.code == 0, listed.text
    assert before.differences(DatabaseState.read(dsn)) == {}
    assert accepted == []
    # The name is echoed in the error: it must not break the one-line error into several
    # (a newline in a name could forge lines of output).
    assert multiline == []


def test_evil_names_for_run_are_refused(target: tuple[str, Path]) -> None:
    dsn, root = target
    before = DatabaseState.read(dsn)
    for key, option in (("quote", "--pipeline"), ("greek_question_mark", "--step")):
        result = cli("run", option, CORPUS[key], "--drain", "--dsn", dsn, cwd=root)
        assert result.code == 2, result.text
        assert "Traceback" not in result.text
    assert before.differences(DatabaseState.read(dsn)) == {}


def test_evil_grant_roles_are_refused_before_anything_is_installed(
    empty_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "orders.yaml").write_text(PIPELINE)
    monkeypatch.chdir(tmp_path)
    before = DatabaseState.read(empty_dsn)
    for evil in CLI_EVIL:
        result = main("apply", "--grant", evil, "--dsn", empty_dsn)
        assert result.code == 1, result.text
        assert lines_of(result.err)[0].startswith("orchestrator: error: "), result.err
    assert before.differences(DatabaseState.read(empty_dsn)) == {}


# -- the Python API ----------------------------------------------------------------------------


@pytest.mark.parametrize("evil", EVIL, ids=IDS)
async def test_the_queue_client_refuses_evil_names_before_any_sql(
    target: tuple[str, Path], evil: str
) -> None:
    from orchestrator.queue import Queue

    dsn, _ = target
    conn = await connect(dsn)
    before = await DatabaseState.of(conn)
    logged: list[str] = []
    conn.add_query_logger(lambda q: logged.append(q.query))
    queue = Queue(conn)
    calls = [
        lambda: queue.create(evil),
        lambda: queue.create_unlogged(evil),
        lambda: queue.create_partitioned(evil),
        lambda: queue.drop(evil),
        lambda: queue.purge(evil),
        lambda: queue.send(evil, {"a": 1}),
        lambda: queue.send_batch(evil, [{"a": 1}]),
        lambda: queue.read(evil, vt=30, qty=1),
        lambda: queue.pop(evil),
        lambda: queue.delete(evil, 1),
        lambda: queue.archive(evil, [1, 2]),
        lambda: queue.set_vt(evil, 1, 30),
        lambda: queue.metrics(evil),
        lambda: queue.enable_notify_insert(evil),
        lambda: queue.disable_notify_insert(evil),
        lambda: queue.update_notify_insert(evil, 10),
        lambda: queue.read_grouped(evil, vt=30, qty=1),
        lambda: queue.read_grouped_rr(evil, vt=30, qty=2),
        lambda: queue.read_grouped_head_with_poll(evil, vt=30, qty=1),
        lambda: queue.create_fifo_index(evil),
        lambda: queue.bind_topic("orders.#", evil),
        lambda: queue.unbind_topic("orders.#", evil),
        lambda: queue.list_topic_bindings(evil),
    ]
    try:
        for call in calls:
            with pytest.raises(OrchestratorError):
                await call()
        assert logged == []  # refused before any round trip
        after = await DatabaseState.of(conn)
    finally:
        await conn.close()
    assert before.differences(after) == {}


@pytest.mark.parametrize("evil", EVIL, ids=IDS)
async def test_start_takes_pipeline_names_as_data(target: tuple[str, Path], evil: str) -> None:
    """`orchestrator.start` sends the pipeline name as a parameter: an unknown pipeline,
    whatever its name looks like, is refused with an orchestrator error, and the only
    statements that ran are the fixed start statements (`start_runs_unless_contract`, or
    `entry_contract` and `start_runs`)."""
    import orchestrator
    from orchestrator.db.named_sql import named_queries

    dsn, _ = target
    conn = await connect(dsn)
    before = await DatabaseState.of(conn)
    logged: list[str] = []
    conn.add_query_logger(lambda q: logged.append(q.query))
    try:
        with pytest.raises(OrchestratorError):
            await orchestrator.start(evil, {"a": 1}, conn=conn)
        with pytest.raises(OrchestratorError):
            await orchestrator.start_many(evil, [{"a": 1}, {"b": 2}], conn=conn)
        ran = list(logged)
        after = await DatabaseState.of(conn)
    finally:
        await conn.close()
    runtime = named_queries("orchestrator.runtime")
    fixed = ("start_runs_unless_contract", "start_runs", "entry_contract")
    assert set(ran) <= {runtime[name] for name in fixed}
    assert before.differences(after) == {}


async def test_evil_header_keys_and_values_are_data(target: tuple[str, Path]) -> None:
    """Headers are JSON: the corpus as keys and values is stored as written, and nothing ran."""
    import orchestrator

    dsn, _ = target
    headers = {key: value for key, value in CORPUS.items() if "\x00" not in value}
    headers |= {value: key for key, value in headers.items() if value}
    conn = await connect(dsn)
    try:
        run_id = await orchestrator.start("orders", {"n": 1}, conn=conn, headers=headers)
        stored = await conn.fetchval(
            "SELECT headers FROM pgmq.q_orders__receive WHERE headers->>'run_id' = $1",
            str(run_id),
        )
        assert {k: stored[k] for k in headers} == headers
        assert await conn.fetchval("SELECT count(*) FROM canary") == 3
    finally:
        await conn.close()


# -- the SQL API a worker role may call --------------------------------------------------------

# Calls that take a queue name (routing keys and patterns are data: they are matched as
# values and never become SQL text; format_table_name only returns a name, as PGMQ's does).
SQL_CALLS = [
    "SELECT pgmq.create($1)",
    "SELECT pgmq.create_unlogged($1)",
    "SELECT pgmq.drop_queue($1)",
    "SELECT pgmq.purge_queue($1)",
    "SELECT pgmq.send($1, '{}'::jsonb)",
    "SELECT * FROM pgmq.read($1, 30, 1)",
    "SELECT * FROM pgmq.pop($1)",
    "SELECT pgmq.delete($1, 1::bigint)",
    "SELECT pgmq.archive($1, 1::bigint)",
    "SELECT * FROM pgmq.set_vt($1, 1::bigint, 30)",
    "SELECT * FROM pgmq.metrics($1)",
    "SELECT pgmq.enable_notify_insert($1)",
    "SELECT pgmq.disable_notify_insert($1)",
    "SELECT pgmq.detach_archive($1)",
    "SELECT pgmq.drop_queue($1, false)",
    "SELECT pgmq.create_non_partitioned($1)",
    "SELECT pgmq.create_partitioned($1, '10', '100', 2)",
    "SELECT pgmq.acquire_queue_lock($1)",
    "SELECT pgmq.convert_archive_partitioned($1)",
    "SELECT pgmq.update_notify_insert($1, 10)",
    "SELECT * FROM pgmq.read_grouped($1, 30, 2)",
    "SELECT * FROM pgmq.read_grouped_rr($1, 30, 2)",
    "SELECT * FROM pgmq.read_grouped_head($1, 30, 2)",
    "SELECT pgmq.create_fifo_index($1)",
    "SELECT pgmq.bind_topic('orders.#', $1)",
    "SELECT pgmq.unbind_topic('orders.#', $1)",
    "SELECT * FROM pgmq.list_topic_bindings($1)",
    "SELECT * FROM orchestrator.claim($1, '{1}', '{1}')",
    "SELECT orchestrator.extend_lease($1, '{1}', '{1}', 30)",
    "SELECT orchestrator.release($1, '{1}', '{1}')",
    "SELECT * FROM orchestrator.next_visible(ARRAY[$1::text])",
    "SELECT * FROM orchestrator.start_runs($1, ARRAY['{}']::jsonb[], NULL, NULL)",
]


@pytest.mark.parametrize("evil", CLI_EVIL, ids=CLI_IDS)
async def test_the_sql_api_refuses_evil_names(target: tuple[str, Path], evil: str) -> None:
    """These functions build dynamic SQL from a queue or pipeline name: each must refuse the
    name or not find it (drop_queue answers false, as PGMQ's does), never run it. (NUL cannot
    even be sent as text.)"""
    dsn, _ = target
    conn = await connect(dsn)
    before = await DatabaseState.of(conn)
    try:
        for statement in SQL_CALLS:
            try:
                async with conn.transaction():
                    rows = await conn.fetch(statement, evil)
            except asyncpg.PostgresError as exc:
                assert exc.sqlstate in ("22023", "42P01", "P0002", "42704"), (
                    f"{statement}: {exc.sqlstate} {exc}"
                )
            else:
                assert [tuple(r) for r in rows] in ([], [(False,)], [(None,)]), (statement, rows)
        after = await DatabaseState.of(conn)
    finally:
        await conn.close()
    assert before.differences(after) == {}
