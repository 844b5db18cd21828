"""A pipeline changed under load: v1 applied, 1,000 runs sent, the v1 worker stopped half-way,
v2 applied (a step renamed, a step added, a step removed with --to-dead-letter, an input
contract tightened compatibly), v2 workers drain; every run ends exactly once where
docs/compiler.md says."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import pytest

from orchestrator.db import connect
from tests.integration.process.support import make_project, provision, send_runs, wait_until

V1 = """\
pipeline: flow
steps:
  a:
    handler: handlers.mod:step
    input: {type: object, properties: {n: {type: number}}}
    next: [b, c]
  b:
    handler: handlers.mod:step
    next: [d]
  c:
    handler: handlers.mod:step
  d:
    handler: handlers.mod:step
"""
V2 = """\
pipeline: flow
steps:
  a:
    handler: handlers.mod:step
    input: {type: object, properties: {n: {type: integer, minimum: 0}}, required: [n]}
    next: [b2]
  b2:
    handler: handlers.mod:step
    renamed_from: b
    next: [d]
  d:
    handler: handlers.mod:step
    next: [e]
  e:
    handler: handlers.mod:step
"""
RUNS = 1000


async def _effects(conn: asyncpg.Connection, step: str) -> set[str]:
    rows = await conn.fetch("SELECT DISTINCT run_id FROM effects WHERE step = $1", step)
    return {r[0] for r in rows}


async def _count(conn: asyncpg.Connection, sql: str) -> int:
    return int(await conn.fetchval(sql))


@pytest.mark.slow
async def test_v1_to_v2_under_load_ends_every_run_exactly_once(tmp_path: Path, dsn: str) -> None:
    old = make_project(tmp_path / "v1", {"flow": V1})
    new = make_project(tmp_path / "v2", {"flow": V2})
    conn: asyncpg.Connection = await connect(dsn)
    try:
        await provision(conn, old.pipelines())
        run_ids = set(await send_runs(dsn, "flow", [{"n": n} for n in range(RUNS)]))
        worker = old.start("run", "--dsn", dsn, log="v1.log")
        try:

            async def half_way() -> bool:
                return await _count(conn, "SELECT count(*) FROM effects WHERE step = 'd'") >= 100

            await wait_until(half_way, timeout=240, what="v1 half-way")
            worker.process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(worker.wait) == 0, worker.output()
        finally:
            worker.stop()
        ended_at_d = await _effects(conn, "d")  # v1: d was the last step
        c_done = await _effects(conn, "c")
        a_by_v1 = await _effects(conn, "a")  # these runs had a c branch; later ones do not
        waiting_b = await _count(conn, "SELECT count(*) FROM pgmq.q_flow__b")
        waiting_c = await _count(conn, "SELECT count(*) FROM pgmq.q_flow__c")
        assert waiting_b > 0 and waiting_c > 0, "v1 finished before it was stopped"

        shown = new.cli("plan", "--dsn", dsn)
        assert shown.returncode == 0, shown.stderr
        noun = "message" if waiting_b == 1 else "messages"
        assert f"move {waiting_b} waiting {noun} from flow__b to flow__b2" in shown.stdout
        assert "incompatible" not in shown.stdout
        refused = new.cli("apply", "--dsn", dsn)
        assert refused.returncode == 1 and "flow__c" in refused.stderr
        applied = new.cli("apply", "--dsn", dsn, "--to-dead-letter")
        assert applied.returncode == 0, applied.stderr
        drained = new.cli("run", "--dsn", dsn, "--drain", timeout=600)
        assert drained.returncode == 0, drained.stderr

        for queue in ("a", "b2", "d", "e"):
            assert await _count(conn, f"SELECT count(*) FROM pgmq.q_flow__{queue}") == 0
        dead = await conn.fetch("SELECT message FROM pgmq.q_flow_dlq")
        assert {d["message"]["error"]["type"] for d in dead} == {"StepRemoved"}
        dead_runs = [d["message"]["run_id"] for d in dead]
        assert len(dead_runs) == len(set(dead_runs)) == waiting_c
        # the c branch of each run v1 started: handled by v1, or a StepRemoved dead letter
        assert c_done.isdisjoint(dead_runs) and c_done | set(dead_runs) == a_by_v1
        # the main line: a once, b (v1) or b2 (v2) once, d once; then e once unless v1 ended it
        counts = await conn.fetch(
            "SELECT step, count(*) AS n, count(DISTINCT run_id) AS runs FROM effects GROUP BY step"
        )
        per_step = {r["step"]: (r["n"], r["runs"]) for r in counts}
        assert per_step["a"] == (RUNS, RUNS) and per_step["d"] == (RUNS, RUNS)
        assert per_step["b"][0] + per_step["b2"][0] == RUNS
        assert (await _effects(conn, "b")).isdisjoint(await _effects(conn, "b2"))
        ended_at_e = await _effects(conn, "e")
        assert ended_at_e.isdisjoint(ended_at_d) and ended_at_e | ended_at_d == run_ids
        assert per_step["e"] == (len(ended_at_e), len(ended_at_e))
    finally:
        await conn.close()
