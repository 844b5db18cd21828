"""A small project on disk (pipeline YAML + handler module) and helpers to run its workers.

Handlers record every attempt that commits through ``ctx.conn`` in table ``effects``, so
"exactly once" is a row count: a handler whose hand-off rolled back (killed worker, lost
lease, restarted server) leaves no row.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from orchestrator.db import connect
from orchestrator.spec import Pipeline, load_pipelines_or_raise

CLI = [sys.executable, "-m", "orchestrator"]

HANDLERS = '''\
"""Handlers of the test pipelines: each records its attempt through ctx.conn."""

import asyncio
import os


async def _record(payload, ctx):
    await ctx.conn.execute(
        "INSERT INTO effects (run_id, step, msg_id, attempt, pid) VALUES ($1, $2, $3, $4, $5)",
        str(ctx.run_id),
        ctx.step,
        ctx.message_id,
        ctx.attempt,
        os.getpid(),
    )
    pause = float(payload.get("sleep", 0))
    if pause:
        await asyncio.sleep(pause)


async def step(payload, ctx):
    await _record(payload, ctx)
    return {**payload, "seen": [*payload.get("seen", []), ctx.step]}
'''

CHAIN = """\
pipeline: chain
defaults:
  visibility_timeout: 2s
  timeout: 1500ms
  retry: {max_attempts: 10, backoff: constant, initial: 100ms, max: 1s, jitter: false}
steps:
  first:
    handler: handlers.mod:step
    concurrency: 2
    next: [second]
  second:
    handler: handlers.mod:step
    concurrency: 2
    batch_size: 5
    next: [third]
  third:
    handler: handlers.mod:step
"""

SLOW = """\
pipeline: slow
defaults:
  visibility_timeout: 60s
  timeout: 30s
steps:
  only:
    handler: handlers.mod:step
    concurrency: 4
"""

EFFECTS_TABLE = """
CREATE TABLE IF NOT EXISTS effects (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    step text NOT NULL,
    msg_id bigint,
    attempt integer,
    pid integer,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def clean_env() -> dict[str, str]:
    """The environment for a CLI subprocess: no DSN or worker marker leaking in."""
    env = dict(os.environ)
    for name in ("DATABASE_URL", "ORCHESTRATOR_WORKER", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Project:
    """A folder with ``pipelines/*.yaml`` and a ``handlers`` package, used as the cwd."""

    root: Path

    @property
    def pipelines_dir(self) -> Path:
        return self.root / "pipelines"

    def write_pipeline(self, name: str, text: str) -> None:
        (self.pipelines_dir / f"{name}.yaml").write_text(text)

    def pipelines(self) -> list[Pipeline]:
        return load_pipelines_or_raise(self.pipelines_dir)

    def pipeline(self, name: str) -> Pipeline:
        return next(p for p in self.pipelines() if p.name == name)

    def cli(
        self,
        *args: str,
        timeout: float = 120,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the CLI to completion in the project folder (`env`: variables to add)."""
        result = subprocess.run(
            [*CLI, *args],
            cwd=self.root,
            env={**clean_env(), **(env or {})},
            capture_output=True,
            timeout=timeout,
            input=input,
        )
        return subprocess.CompletedProcess(
            result.args,
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )

    def start(self, *args: str, log: str = "worker.log", session: bool = False) -> Worker:
        """Start the CLI in the background; its output goes to a file (never a full pipe).

        `session`: in a process group of its own, like a command started from a shell.
        """
        path = self.root / log
        handle = path.open("wb")
        process = subprocess.Popen(
            [*CLI, *args],
            cwd=self.root,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=session,
        )
        handle.close()
        return Worker(process, path)


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker did not exit in {timeout}s:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """Kill it if it still runs (test cleanup)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def make_project(root: Path, pipelines: dict[str, str] | None = None) -> Project:
    project = Project(root)
    project.pipelines_dir.mkdir(parents=True, exist_ok=True)
    package = root / "handlers"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text(HANDLERS)
    for name, text in (pipelines or {"chain": CHAIN}).items():
        project.write_pipeline(name, text)
    return project


async def provision(conn: asyncpg.Connection, pipelines: Sequence[Pipeline]) -> None:
    """Apply the pipelines (queues, notifications, recorded versions) and create `effects`."""
    from orchestrator.compiler import apply

    await apply(conn, pipelines)
    await conn.execute(EFFECTS_TABLE)


async def send_runs(dsn: str, pipeline: str, payloads: list[dict[str, Any]]) -> list[str]:
    from orchestrator.runtime.api import start_many

    conn = await connect(dsn)
    try:
        return [str(r) for r in await start_many(pipeline, payloads, conn=conn)]
    finally:
        await conn.close()


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float = 60, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def effect_count(dsn: str, step: str | None = None) -> int:
    conn = await connect(dsn)
    try:
        if step is None:
            return int(await conn.fetchval("SELECT count(*) FROM effects"))
        return int(await conn.fetchval("SELECT count(*) FROM effects WHERE step = $1", step))
    finally:
        await conn.close()


async def assert_exactly_once(dsn: str, pipeline: Pipeline, run_ids: Sequence[str]) -> None:
    """Every run passed every step exactly once, and the step queues are empty."""
    conn = await connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT run_id, step, count(*) AS n FROM effects GROUP BY run_id, step"
        )
        seen = {(r["run_id"], r["step"]): r["n"] for r in rows}
        expected = {(run, step) for run in run_ids for step in pipeline.order}
        twice = {k: n for k, n in seen.items() if n != 1}
        missing = expected - set(seen)
        assert not twice, f"handled more than once: {sorted(twice.items())[:10]}"
        assert not missing, f"{len(missing)} (run, step) never handled: {sorted(missing)[:10]}"
        assert set(seen) == expected
        queues = [pipeline.queue_name(s) for s in pipeline.order]
        left = await conn.fetchval(
            "SELECT sum(m.queue_length) FROM unnest($1::text[]) q, LATERAL pgmq.metrics(q) m",
            queues,
        )
        assert left == 0, f"{left} messages left in the step queues"
        dead = await conn.fetchval(
            "SELECT queue_length FROM pgmq.metrics($1)", pipeline.dead_letter_queue
        )
        assert dead == 0, f"{dead} dead letters"
    finally:
        await conn.close()
