"""Rolling deploys: workers of two versions of one pipeline directory run side by side.

v2 adds a step after `second` and tightens `first`'s input compatibly. Once v2 is applied, a
v1 worker may still run `first` (same handler, settings and neighbours, a looser input than
the applied one) but not `second` (v2 hands it off to `third`, which v1 does not know).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from orchestrator.db import connect
from tests.integration.process.support import make_project, provision, send_runs

V1 = """\
pipeline: chain
steps:
  first:
    handler: handlers.mod:step
    input: {type: object, properties: {n: {type: number}}}
    next: [second]
  second:
    handler: handlers.mod:step
"""
V2 = """\
pipeline: chain
steps:
  first:
    handler: handlers.mod:step
    input: {type: object, properties: {n: {type: integer, minimum: 0}}, required: [n]}
    next: [second]
  second:
    handler: handlers.mod:step
    next: [third]
  third:
    handler: handlers.mod:step
"""
RUNS = 40


async def test_old_and_new_workers_share_the_steps_both_versions_have(
    tmp_path: Path, dsn: str
) -> None:
    old = make_project(tmp_path / "v1", {"chain": V1})
    new = make_project(tmp_path / "v2", {"chain": V2})
    conn: asyncpg.Connection = await connect(dsn)
    try:
        await provision(conn, new.pipelines())
        await send_runs(dsn, "chain", [{"n": n} for n in range(RUNS)])

        refused = old.cli("run", "--dsn", dsn, "--drain")
        assert refused.returncode == 4
        assert "pipeline chain changed since it was applied (step second changed)" in (
            refused.stderr
        )

        workers = [
            old.start("run", "--dsn", dsn, "--drain", "--step", "first", log="old.log"),
            new.start("run", "--dsn", dsn, "--drain", log="new.log"),
        ]
        codes = await asyncio.gather(*(asyncio.to_thread(w.wait) for w in workers))
        assert codes == [0, 0], [w.output() for w in workers]
        # the new worker drains third too, possibly before old finished first: wait for it
        if await conn.fetchval("SELECT count(*) FROM pgmq.a_chain__third") < RUNS:
            again = new.cli("run", "--dsn", dsn, "--drain")
            assert again.returncode == 0, again.stderr

        ended = await conn.fetch("SELECT message, headers FROM pgmq.a_chain__third")
        assert len(ended) == RUNS
        assert len({r["headers"]["run_id"] for r in ended}) == RUNS
        assert all(r["message"]["seen"] == ["first", "second"] for r in ended)
        effects = await conn.fetch(
            "SELECT step, count(*) AS n, count(DISTINCT run_id) AS runs FROM effects GROUP BY step"
        )
        assert {r["step"]: (r["n"], r["runs"]) for r in effects} == {
            s: (RUNS, RUNS) for s in ("first", "second", "third")
        }
        hashes = {
            r["headers"]["spec_hash"]
            for r in await conn.fetch("SELECT headers FROM pgmq.a_chain__second")
        }
        versions = {old.pipeline("chain").spec_hash(), new.pipeline("chain").spec_hash()}
        assert hashes <= versions
    finally:
        await conn.close()
