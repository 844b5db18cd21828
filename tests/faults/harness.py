"""The fault-injection harness: a 3-step pipeline, real worker processes, faults, and the checks.

Every scenario runs the pipeline ``faults`` (extract -> transform -> load) on real `orchestrator
run` processes. Its one handler records each attempt through ``ctx.conn`` in table ``effects``,
which deliberately has no unique (run_id, step) constraint: a side effect committed twice is a
second row, never a hidden conflict. A failed attempt rolls its row back with the hand-off, so
after a scenario the table holds exactly one row per (run, step) that handed off.

What a run does at each step is written in its payload (``plan``): sleep, hang past the
step's timeout for the first N attempts, fail transiently for the first N attempts, fail for
good (``Fail`` or exhausting its attempts), be poison (``poison``: end the process, ask for an
impossible retry delay, return an output over the payload limit), or announce its first
attempt by writing the worker's pid to a file (so a test can kill exactly the process that is
inside a batch). The test therefore knows, before anything runs, which runs must complete
and which must end in the dead-letter queue; `verify` checks exactly that, and `Figures`
carries what the large variants report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from orchestrator.db import connect
from orchestrator.errors import DatabaseUnavailable

PIPELINE = "faults"
STEPS = ("extract", "transform", "load")
LAST_STEP = STEPS[-1]
DEAD_LETTER_QUEUE = f"{PIPELINE}_dlq"
STEP_QUEUES = tuple(f"{PIPELINE}__{step}" for step in STEPS)
CLI = [sys.executable, "-m", "orchestrator"]

HANDLERS = '''\
"""The fault-injection pipeline's handler: record the attempt, then follow the run's plan."""

import asyncio
import os

from orchestrator import Fail, Retry


async def handle(payload, ctx):
    plan = payload.get("plan", {}).get(ctx.step, {})
    await ctx.conn.execute(
        "INSERT INTO effects (run_id, step, attempt, msg_id, pid) VALUES ($1, $2, $3, $4, $5)",
        str(ctx.run_id),
        ctx.step,
        ctx.attempt,
        ctx.message_id,
        os.getpid(),
    )
    if ctx.attempt <= plan.get("hang", 0):
        await asyncio.sleep(3600)  # far past the step's timeout
    if "announce" in plan and ctx.attempt == 1:
        with open(plan["announce"], "a") as note:  # "this process is in the middle of a batch"
            note.write(f"{os.getpid()}\\n")
    pause = plan.get("sleep", payload.get("sleep", 0))
    if pause:
        await asyncio.sleep(pause)
    if ctx.attempt <= plan.get("flaky", 0):
        raise RuntimeError(f"transient failure on attempt {ctx.attempt}")
    poison = plan.get("poison")
    if poison == "exit":
        os._exit(9)  # ends the process like a crash: no outcome is ever recorded
    if poison == "retry_far":
        raise Retry(after=1e13)
    if poison == "bad_output":
        return {"blob": "x" * (1 << 20)}
    if plan.get("doom") == "fail":
        raise Fail("this run is meant to fail here")
    if plan.get("doom") == "exhaust":
        raise RuntimeError("this run keeps failing here")
    return payload
'''

EFFECTS_TABLE = """
CREATE TABLE effects (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    step text NOT NULL,
    attempt integer NOT NULL,
    msg_id bigint,
    pid integer,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""
# No UNIQUE (run_id, step) on purpose: a duplicate must be countable, not refused.


@dataclass(frozen=True)
class Shape:
    """The pipeline's settings for one scenario."""

    visibility_timeout: str = "2s"
    timeout: str = "1500ms"
    max_attempts: int = 10
    initial: str = "100ms"
    concurrency: int = 2
    batch_size: int = 4

    def yaml(self) -> str:
        retry = (
            f"{{max_attempts: {self.max_attempts}, backoff: constant, initial: {self.initial}, "
            "max: 1s, jitter: true}"
        )
        return (
            f"pipeline: {PIPELINE}\n"
            "defaults:\n"
            f"  visibility_timeout: {self.visibility_timeout}\n"
            f"  timeout: {self.timeout}\n"
            f"  retry: {retry}\n"
            f"  concurrency: {self.concurrency}\n"
            "steps:\n"
            "  extract:\n"
            "    handler: handlers.faults:handle\n"
            "    next: [transform]\n"
            "  transform:\n"
            "    handler: handlers.faults:handle\n"
            f"    batch_size: {self.batch_size}\n"
            "    next: [load]\n"
            "  load:\n"
            "    handler: handlers.faults:handle\n"
            f"    batch_size: {max(1, self.batch_size // 2)}\n"
        )


@dataclass(frozen=True)
class Size:
    """How big a variant is: the small one runs in `make test`, the large one in `make faults`."""

    name: str
    runs: int
    workers: int
    faults: int
    """Kills, restarts, terminated backends... whatever the scenario injects, this many times."""
    interval: float = 1.0
    """Seconds between faults, on average."""
    settle: float = 90.0
    """Seconds the runs may take to settle after the last fault."""


# -- the project on disk -------------------------------------------------------------------------


def write_project(root: Path, shape: Shape) -> Path:
    """``root/pipelines/faults.yaml`` and the ``handlers`` package; returns the pipelines dir."""
    pipelines = root / "pipelines"
    pipelines.mkdir(parents=True, exist_ok=True)
    (pipelines / f"{PIPELINE}.yaml").write_text(shape.yaml())
    package = root / "handlers"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "faults.py").write_text(HANDLERS)
    return pipelines


async def provision(dsn: str, pipelines_dir: Path) -> None:
    """Apply the pipeline (as `orchestrator apply` does) and create `effects`."""
    from orchestrator.compiler import apply
    from orchestrator.spec import load_pipelines_or_raise

    conn = await connect(dsn)
    try:
        await apply(conn, load_pipelines_or_raise(pipelines_dir))
        await conn.execute(EFFECTS_TABLE)
    finally:
        await conn.close()


def with_settings(dsn: str, **settings: str) -> str:
    """`dsn` with query parameters added (e.g. application_name, to find a worker's backends)."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    query.update(settings)
    return urlunsplit(parts._replace(query=urlencode(query)))


# -- runs and their plans ------------------------------------------------------------------------


@dataclass
class Runs:
    """Runs sent so far, with what each is meant to do."""

    ok: set[str] = field(default_factory=set)
    dead: dict[str, str] = field(default_factory=dict)
    """run id -> the step it must be dead-lettered at."""
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.ok) + len(self.dead)


def doomed_step(payload: dict[str, Any]) -> str | None:
    """The step a payload's plan makes fail for good, if any."""
    for step in STEPS:
        entry = payload.get("plan", {}).get(step, {})
        if entry.get("doom") or entry.get("poison"):
            return step
    return None


async def send(dsn: str, payloads: Sequence[dict[str, Any]], runs: Runs) -> list[str]:
    """Start one run per payload (one transaction) and record what each is meant to do."""
    from orchestrator.runtime.api import start_many

    conn = await connect(dsn)
    try:
        ids = [str(r) for r in await start_many(PIPELINE, list(payloads), conn=conn)]
    finally:
        await conn.close()
    for run_id, payload in zip(ids, payloads, strict=True):
        step = doomed_step(payload)
        if step is None:
            runs.ok.add(run_id)
        else:
            runs.dead[run_id] = step
        runs.plans[run_id] = payload
    return ids


async def send_over(
    dsn: str,
    payloads: Sequence[dict[str, Any]],
    runs: Runs,
    seconds: float,
    chunks: int = 10,
    lock: asyncio.Lock | None = None,
) -> None:
    """Send `payloads` in `chunks` spread over `seconds` (a sustained load). With `lock`, each
    chunk is sent holding it, so a fault that takes the lock never leaves a send in doubt."""
    size = max(1, -(-len(payloads) // chunks))
    pause = seconds / max(1, chunks)
    for first in range(0, len(payloads), size):
        async with lock or contextlib.nullcontext():
            await send(dsn, payloads[first : first + size], runs)
        await asyncio.sleep(pause)


# -- worker processes ----------------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DATABASE_URL", "ORCHESTRATOR_WORKER", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Fleet:
    """Independent `orchestrator run` processes, each with its own log and application_name.

    A killed process is restarted by `restart` the way a service manager would; `kills` and
    `starts` count what happened.
    """

    def __init__(
        self,
        root: Path,
        dsn: str,
        count: int,
        *extra: str,
        tag: str = "faults_w",
    ) -> None:
        self.root = root
        self.dsn = dsn
        self.count = count
        self.extra = extra
        self.tag = tag
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.logs: list[Path] = []
        self.kills = 0
        self.starts = 0
        self.exit_codes: list[int] = []

    def application_name(self, index: int) -> str:
        return f"{self.tag}{index}"

    def start(self, index: int | None = None) -> None:
        for i in range(self.count) if index is None else [index]:
            dsn = with_settings(self.dsn, application_name=self.application_name(i))
            log = self.root / f"worker{i}.{self.starts}.log"
            with log.open("wb") as handle:
                self.processes[i] = subprocess.Popen(
                    [*CLI, "run", "--dsn", dsn, "--log-format", "json", *self.extra],
                    cwd=self.root,
                    env=clean_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                )
            self.logs.append(log)
            self.starts += 1

    def kill(self, index: int) -> None:
        """SIGKILL worker `index` (nothing is released: its messages wait for their vt)."""
        process = self.processes[index]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            self.kills += 1
        self.exit_codes.append(process.wait(30))

    def alive(self) -> list[int]:
        return [i for i, p in self.processes.items() if p.poll() is None]

    def ready(self) -> bool:
        """Every process got as far as starting its consumers (signals are handled then)."""
        latest = {int(p.name[6:].split(".")[0]): p for p in self.logs}
        return all("worker started" in log.read_text(errors="replace") for log in latest.values())

    def stop(self, timeout: float = 60) -> list[int]:
        """SIGTERM every process once it is up, and wait: their exit codes (a hang fails)."""
        deadline = time.monotonic() + timeout
        while not self.ready() and time.monotonic() < deadline:
            time.sleep(0.1)
        codes = []
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for index, process in self.processes.items():
            try:
                codes.append(process.wait(timeout))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError(
                    f"worker {index} did not stop within {timeout}s of SIGTERM:\n"
                    + self.output()[-4000:]
                ) from None
        self.exit_codes.extend(codes)
        return codes

    def cleanup(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    def output(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in self.logs)

    def crashes(self) -> list[str]:
        """Log lines of a worker task that died (the worker then stops 'loudly')."""
        return [
            line
            for log in self.logs
            for line in log.read_text(errors="replace").splitlines()
            if "stopping the worker" in line or "stopped unexpectedly" in line
        ]


def children(pid: int) -> list[int]:
    """Direct children of process `pid` (Linux /proc)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# -- watching the database -----------------------------------------------------------------------


_DOWN = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    DatabaseUnavailable,
)


class Probe:
    """A monitoring connection that reconnects when the server restarts or kills it."""

    def __init__(self, dsn: str) -> None:
        self.dsn = with_settings(dsn, application_name="faults_probe")
        self._conn: asyncpg.Connection | None = None

    async def conn(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await connect(self.dsn, timeout=5)
        return self._conn

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._retry(lambda c: c.fetchval(query, *args))

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self._retry(lambda c: c.fetch(query, *args)))

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any]:
        return dict(await self._retry(lambda c: c.fetchrow(query, *args)))

    async def execute(self, query: str, *args: Any) -> str:
        return str(await self._retry(lambda c: c.execute(query, *args)))

    async def _retry(self, call: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        deadline = time.monotonic() + 120
        while True:
            try:
                return await call(await self.conn())
            except _DOWN as exc:
                await self.close()
                if time.monotonic() > deadline:
                    raise AssertionError(f"the database stayed unreachable: {exc}") from exc
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)
            self._conn = None

    async def effects(self) -> int:
        return int(await self.fetchval("SELECT count(*) FROM effects"))

    async def completed(self) -> int:
        return int(
            await self.fetchval(
                "SELECT count(DISTINCT run_id) FROM effects WHERE step = $1", LAST_STEP
            )
        )

    async def dead_letters(self) -> int:
        return int(
            await self.fetchval("SELECT queue_length FROM pgmq.metrics($1)", DEAD_LETTER_QUEUE)
        )

    async def waiting(self) -> int:
        """Messages still in the step queues (visible, in flight or delayed)."""
        return int(
            await self.fetchval(
                "SELECT coalesce(sum(m.queue_length), 0) FROM unnest($1::text[]) q,"
                " LATERAL pgmq.metrics(q) m",
                list(STEP_QUEUES),
            )
        )

    async def in_transaction(self, application_name: str) -> bool:
        """True while a backend of that worker has a transaction open (a batch in flight)."""
        return bool(
            await self.fetchval(
                "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = $1"
                " AND xact_start IS NOT NULL AND pid <> pg_backend_pid())",
                application_name,
            )
        )

    async def settled(self, runs: Runs, timeout: float) -> None:
        """Wait until every run completed or was dead-lettered and the step queues are empty."""
        await wait_until(
            lambda: self._settled(runs), timeout, f"{runs.total} runs to settle", self.state
        )

    async def _settled(self, runs: Runs) -> bool:
        return (
            await self.waiting() == 0
            and await self.completed() + await self.dead_letters() >= runs.total
        )

    async def state(self) -> str:
        return (
            f"{await self.completed()} completed, {await self.dead_letters()} dead letters, "
            f"{await self.waiting()} messages in the step queues"
        )


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    timeout: float,
    what: str,
    state: Callable[[], Awaitable[str]] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            detail = f" ({await state()})" if state is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        await asyncio.sleep(0.1)


# -- the verdict ---------------------------------------------------------------------------------


@dataclass
class Figures:
    """What a scenario did and what came out of it."""

    scenario: str
    size: str
    runs: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    """What was injected: kills, restarts, terminated backends..."""
    completed: int = 0
    dead_letters: int = 0
    lost: int = 0
    duplicated: int = 0
    redelivered: int = 0
    """Step messages read more than once (retries and messages taken back after a fault)."""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in self.faults.items()) or "-"
        extra = "".join(f", {k} {v}" for k, v in self.extra.items())
        return (
            f"{self.scenario} [{self.size}]: runs {self.runs}, {faults}, completed "
            f"{self.completed}, dead letters {self.dead_letters}, lost {self.lost}, duplicated "
            f"{self.duplicated}, redelivered {self.redelivered}, {self.seconds:.1f}s{extra}"
        )


REPORTED: list[Figures] = []
"""Figures of every scenario run in this session (printed at the end of the session)."""


async def verify(probe: Probe, runs: Runs, figures: Figures) -> Figures:
    """Count what happened, then assert nothing was lost, duplicated or wrongly dead-lettered."""
    rows = await probe.fetch("SELECT run_id, step, count(*) AS n FROM effects GROUP BY 1, 2")
    seen = {(r["run_id"], r["step"]): int(r["n"]) for r in rows}
    letters = await probe.fetch(
        f"SELECT message->>'run_id' AS run_id, message->>'step' AS step,"
        f" message->'error'->>'type' AS error FROM pgmq.q_{DEAD_LETTER_QUEUE}"
    )
    dead = {r["run_id"]: r["step"] for r in letters}
    archives = " UNION ALL ".join(f"SELECT read_ct FROM pgmq.a_{q}" for q in STEP_QUEUES)
    redelivered = await probe.fetchval(f"SELECT count(*) FROM ({archives}) a WHERE read_ct > 1")
    expected = {(run, step) for run in runs.ok for step in STEPS}
    for run, step in runs.dead.items():
        expected |= {(run, s) for s in STEPS[: STEPS.index(step)]}
    completed = {run for (run, step) in seen if step == LAST_STEP}

    figures.runs = runs.total
    figures.completed = len(completed & runs.ok)
    figures.dead_letters = len(dead)
    figures.duplicated = sum(n - 1 for n in seen.values() if n > 1)
    figures.lost = len(runs.ok - completed) + len(set(runs.dead) - set(dead))
    figures.redelivered = int(redelivered)
    REPORTED.append(figures)

    twice = sorted((k, n) for k, n in seen.items() if n > 1)
    assert not twice, f"side effects committed more than once: {twice[:10]}"
    missing = sorted(expected - set(seen))
    assert not missing, (
        f"{len(missing)} (run, step) side effects missing: {missing[:10]}; "
        f"their dead letters: {await _letters_of(probe, {run for run, _ in missing})}"
    )
    extra = sorted(set(seen) - expected)
    assert not extra, f"side effects of steps that must not hand off: {extra[:10]}"
    assert dead == runs.dead, (
        f"dead letters differ: unexpected {sorted(set(dead) - set(runs.dead))[:5]}, "
        f"missing {sorted(set(runs.dead) - set(dead))[:5]}, "
        f"wrong step {[r for r in dead if r in runs.dead and dead[r] != runs.dead[r]][:5]}"
    )
    assert await probe.waiting() == 0, "messages left in the step queues"
    return figures


async def _letters_of(probe: Probe, run_ids: set[str]) -> list[dict[str, Any]]:
    """The dead letters of `run_ids` (step, error, headers), to explain a failed check."""
    rows = await probe.fetch(
        f"SELECT message->>'run_id' AS run_id, message->>'step' AS step,"
        f" message->'error' AS error, message->'headers' AS headers, read_ct"
        f" FROM pgmq.q_{DEAD_LETTER_QUEUE} WHERE message->>'run_id' = ANY($1::text[])",
        sorted(run_ids),
    )
    return [dict(r) for r in rows]


def plans(
    count: int,
    rng: random.Random,
    *,
    sleep: float = 0.0,
    flaky: float = 0.0,
    max_flaky: int = 0,
    doomed: float = 0.0,
    doom: str = "exhaust",
    hang: float = 0.0,
    max_hang: int = 0,
) -> list[dict[str, Any]]:
    """`count` payloads: each step of a run is flaky (fails its first 1..max_flaky attempts)
    with probability `flaky`, hangs past its timeout likewise, and a share `doomed` of the runs
    fails for good at a random step."""
    payloads = []
    for n in range(count):
        plan: dict[str, dict[str, Any]] = {}
        for step in STEPS:
            entry: dict[str, Any] = {}
            if max_flaky and rng.random() < flaky:
                entry["flaky"] = rng.randint(1, max_flaky)
            if max_hang and rng.random() < hang:
                entry["hang"] = rng.randint(1, max_hang)
            if entry:
                plan[step] = entry
        if rng.random() < doomed:
            plan.setdefault(rng.choice(STEPS), {})["doom"] = doom
        payload: dict[str, Any] = {"n": n, "plan": plan}
        if sleep:
            payload["sleep"] = sleep
        payloads.append(payload)
    return payloads


async def queue_bloat(probe: Probe) -> dict[str, int]:
    """Dead tuples and size (bytes) of the step queue tables, from the statistics."""
    await probe.execute("SELECT pg_stat_clear_snapshot()")
    row = await probe.fetchrow(
        "SELECT coalesce(sum(n_dead_tup), 0) AS dead, coalesce(sum(n_live_tup), 0) AS live,"
        " coalesce(sum(pg_total_relation_size(relid)), 0) AS bytes"
        " FROM pg_stat_user_tables WHERE schemaname = 'pgmq' AND relname = ANY($1::text[])",
        [f"q_{q}" for q in STEP_QUEUES],
    )
    return {k: int(v) for k, v in row.items()}
