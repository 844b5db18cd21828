"""`orchestrator run` refuses to start, with one line and a documented exit code, when the
pipelines, the selection, a handler or the database is not right."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from orchestrator.db import connect
from tests.integration.process.support import CHAIN, SLOW, Project, make_project, provision


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path, {"chain": CHAIN, "slow": SLOW})


def _one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("orchestrator: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_invalid_pipeline_files_are_reported_without_a_traceback(project: Project) -> None:
    project.write_pipeline("broken", "pipeline: broken\nsteps:\n  a: {handler: m:f, next: [b]}\n")
    result = project.cli("run", "--dsn", "postgresql://127.0.0.1:1/none")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "1 error in pipeline files" in result.stderr
    assert "broken.yaml:3:" in result.stderr


def test_a_missing_pipelines_folder_is_a_usage_error(project: Project) -> None:
    result = project.cli("run", "--pipelines", "nowhere", "--dsn", "postgresql://127.0.0.1:1/x")
    assert result.returncode == 2
    assert "no such file or directory: nowhere" in _one_line_error(result.stderr)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--pipeline", "orders"], "unknown pipeline 'orders'; known pipelines: 'chain', 'slow'"),
        (
            ["--step", "fourth"],
            "unknown step 'fourth'; known steps: 'chain.first', 'chain.second', "
            "'chain.third', 'slow.only'",
        ),
        (
            ["--pipeline", "slow", "--step", "first"],
            "unknown step 'first'; known steps: 'slow.only'",
        ),
        (["--step", "chain.only"], "unknown step 'chain.only'"),
    ],
)
def test_unknown_names_list_the_known_ones(
    project: Project, option: list[str], message: str
) -> None:
    result = project.cli("run", *option, "--dsn", "postgresql://127.0.0.1:1/x")
    assert result.returncode == 2
    assert message in _one_line_error(result.stderr)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--workers", "0"], "argument --workers: must be at least 1, got 0"),
        (["--concurrency", "many"], "argument --concurrency: expected a whole number"),
        (["--shutdown-timeout", "soon"], "argument --shutdown-timeout:"),
        (["--metrics-port", "70000"], "must be a port number"),
    ],
)
def test_bad_option_values_are_usage_errors(
    project: Project, option: list[str], message: str
) -> None:
    result = project.cli("run", *option)
    assert result.returncode == 2
    assert message in result.stderr


async def test_a_handler_that_does_not_import_is_one_line(project: Project, dsn: str) -> None:
    # Handlers are imported only once the database holds the applied pipeline.
    project.write_pipeline("chain", CHAIN.replace("handlers.mod:step", "handlers.gone:step", 1))
    conn: asyncpg.Connection = await connect(dsn)
    try:
        await provision(conn, project.pipelines())
    finally:
        await conn.close()
    result = project.cli("run", "--dsn", dsn, "--drain")
    assert result.returncode == 1
    line = _one_line_error(result.stderr)
    assert "step chain.first: cannot import 'handlers.gone'" in line


def test_an_unreachable_database_exits_3(project: Project) -> None:
    result = project.cli("run", "--dsn", "postgresql://127.0.0.1:1/nothing")
    assert result.returncode == 3
    assert "cannot connect to" in _one_line_error(result.stderr)


def test_an_empty_database_asks_for_apply(project: Project, empty_dsn: str) -> None:
    result = project.cli("run", "--dsn", empty_dsn)
    assert result.returncode == 4
    assert "run orchestrator apply" in _one_line_error(result.stderr)


def test_pipelines_not_applied_ask_for_apply(project: Project, dsn: str) -> None:
    result = project.cli("run", "--dsn", dsn, "--pipeline", "chain")
    assert result.returncode == 4
    line = _one_line_error(result.stderr)
    assert "pipeline chain is not applied" in line and "run orchestrator apply" in line


async def test_a_pipeline_changed_since_apply_asks_for_apply(project: Project, dsn: str) -> None:
    conn: asyncpg.Connection = await connect(dsn)
    try:
        await provision(conn, project.pipelines())
    finally:
        await conn.close()
    project.write_pipeline("chain", CHAIN.replace("concurrency: 2", "concurrency: 3", 1))
    result = project.cli("run", "--dsn", dsn, "--drain")
    assert result.returncode == 4
    line = _one_line_error(result.stderr)
    assert "pipeline chain changed since it was applied" in line
    assert "run orchestrator apply" in line
