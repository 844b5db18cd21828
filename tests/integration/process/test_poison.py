"""Handlers that end or hang their process, and step queues dropped by hand, with real worker
processes: a message whose handler calls ``os._exit`` is dead-lettered (WorkerLost) after its
attempts and its batch-mates are handed off exactly once; a hung ``def`` handler does not keep
a worker past its shutdown timeout; a missing step queue stops ``run`` with exit 4."""

from __future__ import annotations

import signal
import time

import asyncpg

from orchestrator.db import connect
from tests.integration.process.support import (
    Project,
    assert_exactly_once,
    effect_count,
    provision,
    send_runs,
    wait_until,
)

POISON_HANDLERS = """\
import os
import time

from handlers.mod import _record


async def maybe_die(payload, ctx):
    if payload.get("kill"):
        os._exit(7)  # what a segfault or the OOM killer does: no cleanup, no outcome
    await _record(payload, ctx)
    return payload


def hang(payload, ctx):
    time.sleep(600)  # a call that never returns and cannot be interrupted
"""

POISON = """\
pipeline: poison
dead_letter: poison_dlq
defaults:
  visibility_timeout: 2s
  timeout: 1500ms
  retry: {max_attempts: 2, backoff: constant, initial: 100ms, max: 1s, jitter: false}
steps:
  only:
    handler: handlers.poison:maybe_die
    batch_size: 10
"""

HUNG = """\
pipeline: hung
defaults:
  visibility_timeout: 30s
  timeout: 1s
steps:
  only:
    handler: handlers.poison:hang
    concurrency: 2
"""


def _with_poison(project: Project) -> None:
    (project.root / "handlers" / "poison.py").write_text(POISON_HANDLERS)
    project.write_pipeline("poison", POISON)
    project.write_pipeline("hung", HUNG)


async def test_a_process_killing_message_is_dead_lettered_and_its_batch_mates_finish(
    project: Project, dsn: str
) -> None:
    _with_poison(project)
    conn = await connect(dsn)
    try:
        await provision(conn, project.pipelines())
        payloads = [{"n": n, "kill": n == 3} for n in range(10)]
        runs = await send_runs(dsn, "poison", payloads)
        exits = []
        for _ in range(8):  # each crash is a real process dying; the next run carries on
            result = project.cli("run", "--dsn", dsn, "--pipeline", "poison", "--drain")
            exits.append(result.returncode)
            if result.returncode == 0:
                break
        # A shared batch, then alone twice: two losses alone in a row are the proof (one
        # could be an outside SIGKILL that hit that run).
        assert exits[-1] == 0 and exits.count(7) == 3, exits
        letters = await conn.fetch("SELECT message FROM pgmq.q_poison_dlq")
        assert [r["message"]["error"]["type"] for r in letters] == ["WorkerLost"]
        [letter] = [r["message"] for r in letters]
        assert letter["run_id"] == runs[3] and letter["attempts"] == 4
        good = [r for i, r in enumerate(runs) if i != 3]
        rows = await conn.fetch("SELECT run_id, count(*) AS n FROM effects GROUP BY run_id")
        assert {r["run_id"]: r["n"] for r in rows} == dict.fromkeys(good, 1)
        assert await conn.fetchval("SELECT count(*) FROM pgmq.q_poison__only") == 0
        # A batch-mate paid one extra read at most, and ran alone after the crash.
        assert await conn.fetchval("SELECT max(read_ct) FROM pgmq.a_poison__only") <= 2
    finally:
        await conn.close()


async def test_a_hung_def_handler_does_not_keep_the_worker_past_its_shutdown_timeout(
    project: Project, dsn: str
) -> None:
    _with_poison(project)
    conn = await connect(dsn)
    try:
        await provision(conn, project.pipelines())
        await send_runs(dsn, "hung", [{"n": n} for n in range(4)])
        worker = project.start("run", "--dsn", dsn, "--pipeline", "hung", "--shutdown-timeout", "1")
        try:

            async def abandoned() -> bool:
                errors = await conn.fetchval(
                    "SELECT count(*) FROM pgmq.q_hung__only WHERE headers ? 'errors'"
                )
                return int(errors) >= 2

            await wait_until(abandoned, 60, "timed-out attempts")
            worker.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = worker.wait(60)
            took = time.monotonic() - started
        finally:
            worker.stop()
        assert code == 0, worker.output()
        assert took < 1 + 15, worker.output()  # shutdown timeout plus a few seconds
        assert "HandlerTimeout" in worker.output()
    finally:
        await conn.close()


async def test_run_refuses_a_missing_step_queue_and_stops_when_one_disappears(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    chain = project.pipeline("chain")
    await applied.execute("SELECT pgmq.drop_queue('chain__second')")
    refused = project.cli("run", "--dsn", dsn, "--pipeline", "chain", "--drain")
    assert refused.returncode == 4, refused.stderr
    assert "chain__second does not exist; run orchestrator apply" in refused.stderr
    assert "Traceback" not in refused.stderr

    await applied.execute("SELECT pgmq.create('chain__second')")
    runs = await send_runs(dsn, "chain", [{"n": n} for n in range(3)])
    worker = project.start("run", "--dsn", dsn, "--pipeline", "chain")
    try:
        await wait_until(lambda: _done(dsn, 9), 60, "the runs to finish")
        await applied.execute("SELECT pgmq.drop_queue('chain__third')")
        code = worker.wait(60)
    finally:
        worker.stop()
    assert code == 4, worker.output()
    assert "queue 'chain__third' of step chain.third does not exist" in worker.output()
    assert worker.output().count("Traceback") == 0
    await applied.execute("SELECT pgmq.create('chain__third')")
    await assert_exactly_once(dsn, chain, runs)


async def _done(dsn: str, n: int) -> bool:
    return await effect_count(dsn) >= n
