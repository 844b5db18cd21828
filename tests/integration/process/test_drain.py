"""`orchestrator run --drain` as a batch job: every run passes every step exactly once, then
the process exits 0."""

from __future__ import annotations

import json

import asyncpg

from tests.integration.process.support import Project, assert_exactly_once, send_runs


def _log_events(output: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


async def test_drain_completes_every_run_exactly_once(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    chain = project.pipeline("chain")
    runs = await send_runs(dsn, "chain", [{"n": n} for n in range(40)])

    result = project.cli("run", "--dsn", dsn, "--pipeline", "chain", "--drain", "--log-format=json")

    assert result.returncode == 0, result.stderr
    await assert_exactly_once(dsn, chain, runs)
    outputs = await applied.fetch("SELECT message FROM pgmq.a_chain__third ORDER BY msg_id")
    assert len(outputs) == 40
    assert all(o["message"]["seen"] == ["first", "second"] for o in outputs)
    messages = [e["msg"] for e in _log_events(result.stderr)]
    assert any(m.startswith("worker started: pid") and "3 step(s)" in m for m in messages)
    assert "drained: the queues are empty" in messages


async def test_drain_with_nothing_to_do_exits_at_once(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    result = project.cli("run", "--dsn", dsn, "--drain")
    assert result.returncode == 0, result.stderr
    assert await applied.fetchval("SELECT count(*) FROM effects") == 0


async def test_drain_of_one_step_leaves_the_others_queued(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    chain = project.pipeline("chain")
    runs = await send_runs(dsn, "chain", [{"n": n} for n in range(10)])

    result = project.cli("run", "--dsn", dsn, "--step", "chain.first", "--drain")
    assert result.returncode == 0, result.stderr
    steps = await applied.fetch("SELECT step, count(*) AS n FROM effects GROUP BY step")
    assert {r["step"]: r["n"] for r in steps} == {"first": 10}
    assert await applied.fetchval("SELECT count(*) FROM pgmq.q_chain__second") == 10

    result = project.cli("run", "--dsn", dsn, "--pipeline", "chain", "--drain")
    assert result.returncode == 0, result.stderr
    await assert_exactly_once(dsn, chain, runs)
