"""Latency at a steady rate with the default settings: enqueue to handler start, per step.

A 3-step no-op pipeline (a -> b -> c) with nothing but handlers set (default batch_size,
concurrency and notify throttle) runs in a real worker process (`orchestrator run --workers 1`);
runs are started at a steady `--rate` per second for `--seconds`. Each handler notes how long
its message waited: from the ``sent_at`` header (set when the message was sent: by `start` for
step a, by the previous step's hand-off for b and c) to its first line. The same pipeline runs
again with the notify throttle at 0 (a notification per insert), and beside both, the plain-SQL
wake-up (send, NOTIFY, LISTEN, read; `runtime_bench.plain_latency`).

``python -m bench.steady_bench [--rate 50] [--seconds 20]`` runs it on a scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import Row, percentile
from orchestrator.db import connect

SECTION = "steady"
VARIANTS = ((None, "default throttle"), ("0ms", "throttle 0"))
STEPS = ("a", "b", "c")

PIPELINE = """\
pipeline: {name}
{queues}steps:
  a: {{handler: steady_handlers:noted, next: b}}
  b: {{handler: steady_handlers:noted, next: c}}
  c: {{handler: steady_handlers:noted}}
"""

HANDLERS = """\
import os
import time
from datetime import datetime

_OUT = os.open(os.environ["STEADY_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


async def noted(payload, ctx):
    waited = time.time() - datetime.fromisoformat(ctx.headers["sent_at"]).timestamp()
    os.write(_OUT, f"{ctx.step} {waited * 1000:.3f}\\n".encode())
"""


async def steady(
    dsn: str, *, throttle: str | None, rate: float, seconds: float
) -> dict[str, list[float]]:
    """Milliseconds each message of each step waited, with the notify throttle `throttle`
    (None: the default)."""
    from orchestrator.compiler import apply
    from orchestrator.runtime import start
    from orchestrator.spec import load_pipelines_or_raise

    name = "steady_default" if throttle is None else "steady_" + throttle.replace("ms", "")
    queues = "" if throttle is None else f"queues: {{notify: {{throttle: {throttle}}}}}\n"
    with tempfile.TemporaryDirectory(prefix="steady-") as tmp:
        root = Path(tmp)
        (root / "pipelines").mkdir()
        (root / "pipelines" / f"{name}.yaml").write_text(PIPELINE.format(name=name, queues=queues))
        (root / "steady_handlers.py").write_text(HANDLERS)
        out = root / "waits.txt"
        conn = await connect(dsn)
        try:
            await apply(conn, load_pipelines_or_raise(root / "pipelines"), allow_destroy=True)
            env = {**os.environ, "STEADY_OUT": str(out), "PYTHONPATH": str(root)}
            env.pop("DATABASE_URL", None)
            log = (root / "worker.log").open("wb")
            worker = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "run", "--dsn", dsn, "--workers", "1",
                 "--pipelines", str(root / "pipelines"), "--pipeline", name],
                cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            log.close()
            try:
                await _wait_ready(conn, name, root / "worker.log")
                runs = int(rate * seconds)
                begun = time.perf_counter()
                for n in range(runs):
                    delay = begun + n / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await start(name, {"n": n}, conn=conn)
                await _wait_lines(out, runs * len(STEPS), 60)
            finally:
                worker.terminate()
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    worker.kill()
        finally:
            await conn.close()
        waits: dict[str, list[float]] = {s: [] for s in STEPS}
        for line in out.read_text().splitlines():
            step, ms = line.split()
            waits[step].append(float(ms))
        return waits


async def _wait_ready(conn: object, name: str, log: Path) -> None:
    """Until the worker has read its first queue (a probe run reaches its last step)."""
    from orchestrator.runtime import start

    await start(name, {"probe": True}, conn=conn)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = await conn.fetchval(  # type: ignore[attr-defined]
            "SELECT count(*) FROM pgmq.a_" + name + "__c"  # `name` is this module's constant
        )
        if done:
            return
        await asyncio.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the worker did not start within 60 s:\n{tail}")


async def _wait_lines(path: Path, lines: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= lines + len(STEPS):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"only some of {lines} handler calls were noted within {timeout:g} s")


async def run(dsn: str, *, rate: float = 50, seconds: float = 20) -> list[Row]:
    from bench.runtime_bench import plain_latency

    plain = await plain_latency(dsn, 300)
    rows: list[Row] = []
    for throttle, label in VARIANTS:
        waits = await steady(dsn, throttle=throttle, rate=rate, seconds=seconds)
        for step in STEPS:
            values = waits[step][1:]  # the probe run's first wait includes the worker's start
            for pct in (50, 99):
                rows.append(
                    Row(
                        SECTION,
                        f"{rate:g} runs/s, {label}: step {step} enqueue->start p{pct}",
                        1,
                        percentile(values, pct),
                        percentile(plain, pct),
                        unit="ms",
                        baseline_form="send; NOTIFY; LISTEN; read",
                        higher_is_better=False,
                    )
                )
    return rows


async def _main(argv: Sequence[str] | None) -> int:
    from bench.common import format_table, machine_facts, scratch_orchestrator_database

    parser = argparse.ArgumentParser(prog="python -m bench.steady_bench")
    parser.add_argument("--rate", type=float, default=50.0, help="runs started per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long runs are started")
    args = parser.parse_args(argv)
    facts = machine_facts()
    dsn = await scratch_orchestrator_database("orchestrator_steady_bench")
    rows = await run(dsn, rate=args.rate, seconds=args.seconds)
    facts.load_after = os.getloadavg()
    print("\n".join(facts.lines()))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1:])))
