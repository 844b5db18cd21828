"""`make demo`: the work-order pipeline end to end on one machine.

Stages: find the database (the embedded PostgreSQL unless --dsn or DATABASE_URL says
otherwise), create the application tables, `orchestrator apply --yes`, reset the demo's data
(application tables, the two pipelines' queues and dead letters), start the SAP stand-in and
the SMTP sink on free local ports, write a deterministic sample CSV and start one run per
work order, run `orchestrator run --drain` with progress until every run is done, start a
daily report and drain again, then print `orchestrator status`, the trace of one run that
needed retries, and `orchestrator dlq list work_orders`.

It stops what it started (the stand-ins and the workers). The embedded PostgreSQL keeps
running, as after any `orchestrator` command, so `orchestrator status` and friends can look at
what the demo left; `orchestrator db stop` stops it. Running the demo again starts from clean
tables and empty queues (the archives, which are history, stay).

    python -m pipelines.demo [--dsn URL] [--orders N] [--workers N] [--tables-only]

Environment: ORCHESTRATOR_DEMO_ORDERS (default 1000), ORCHESTRATOR_DEMO_WORKERS (2),
ORCHESTRATOR_DEMO_TIMEOUT (seconds, 600); see docs/configuration.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = ROOT / "pipelines"
DEMO_PIPELINES = ("work_orders", "reports")
PLANNING_OFFICE = "planning@example.com"
REPORT_RECIPIENT = "plant-management@example.com"
STOP_GRACE = 30.0
BAR_WIDTH = 24


class StageFailed(Exception):
    """A stage of the demo failed; the message says which and why."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")


@dataclass
class Demo:
    """Options and what the demo started (so it can stop it)."""

    dsn: str
    orders: int
    workers: int
    timeout: float
    home: Path
    out: TextIO = sys.stdout
    env: dict[str, str] = field(default_factory=dict)
    started: list[Any] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    dead_letter_queue: str = "work_orders_dlq"

    @property
    def log_path(self) -> Path:
        return self.home / "demo" / "workers.log"


# -- small helpers -----------------------------------------------------------------------------


def say(text: str = "", *, out: TextIO | None = None) -> None:
    print(text, file=out or sys.stdout, flush=True)


@contextlib.contextmanager
def stage(title: str) -> Iterator[None]:
    """Print the stage's title; turn any error inside into StageFailed naming the stage."""
    say(f"==> {title}")
    try:
        yield
    except (StageFailed, KeyboardInterrupt):
        raise
    except Exception as exc:
        from orchestrator.db.dsn import redact

        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {text}" if text else repr(exc)
        raise StageFailed(title, redact(reason)) from exc


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise StageFailed("settings", f"{name} must be a whole number above 0, got {raw!r}")
    return int(raw)


def cli(*args: str) -> list[str]:
    """The command line of an `orchestrator` subcommand, run with this interpreter."""
    return [sys.executable, "-m", "orchestrator", *args]


async def run_cli(demo: Demo, *args: str, show: bool = True) -> str:
    """Run an `orchestrator` subcommand against the demo's database; its output is shown
    (inherited, so a terminal gets colours) or returned. Non-zero exit: StageFailed.

    The DSN goes in DATABASE_URL (demo.env), not on the command line every local user sees."""
    command = cli(*args)
    say(f"$ orchestrator {' '.join(args)}")
    pipe = None if show else asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env=demo.env,
        stdout=pipe,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await proc.communicate()
    if proc.returncode != 0:
        reason = stderr.decode(errors="replace").strip().splitlines()
        detail = reason[-1] if reason else "(no message)"
        raise StageFailed(
            f"orchestrator {args[0]}", f"exited with code {proc.returncode}: {detail}"
        )
    return stdout.decode(errors="replace") if stdout else ""


async def connect(demo: Demo) -> asyncpg.Connection:
    from orchestrator.db import connect as db_connect

    return await db_connect(demo.dsn)


# -- stages ------------------------------------------------------------------------------------


def find_database(explicit: str | None) -> str:
    from orchestrator.db import redact, resolve_dsn

    with stage("Database"):
        if not explicit and not os.environ.get("DATABASE_URL"):
            from orchestrator.db import embedded

            if not embedded.status().running:
                say("    starting the embedded PostgreSQL (the first start takes a few seconds)")
        dsn = resolve_dsn(explicit)
        say(f"    {redact(dsn)}")
        return dsn


async def create_tables(demo: Demo) -> None:
    from pipelines.handlers.sql import SQL_DIR, create_tables

    with stage("Application tables (work_orders, barcodes, sap_sync, notifications, reports)"):
        conn = await connect(demo)
        try:
            await create_tables(conn)
        finally:
            await conn.close()
        say(f"    from {SQL_DIR.relative_to(ROOT) / 'schema.sql'}")


async def apply_pipelines(demo: Demo) -> None:
    with stage("Apply the pipelines"):
        output = await run_cli(demo, "apply", "--yes", "--pipelines", str(PIPELINES), show=False)
        for line in output.strip().splitlines():
            say(f"    {line}")


async def reset(demo: Demo) -> None:
    """Empty the application tables and the demo pipelines' queues (not their archives)."""
    from orchestrator.spec import load_pipelines_or_raise
    from pipelines.handlers.sql import clear_tables

    with stage("Reset the demo data"):
        pipelines = {p.name: p for p in load_pipelines_or_raise(str(PIPELINES))}
        queues = [name for p in DEMO_PIPELINES for name in pipelines[p].queue_names()]
        demo.dead_letter_queue = pipelines["work_orders"].dead_letter_queue
        conn = await connect(demo)
        try:
            async with conn.transaction():
                await clear_tables(conn)
                purged = await conn.fetchval(
                    "SELECT coalesce(sum(pgmq.purge_queue(queue_name)), 0) "
                    "FROM pgmq.list_queues() WHERE queue_name = ANY($1::text[])",
                    queues,
                )
        finally:
            await conn.close()
        say(f"    tables emptied; {purged} message(s) left from an earlier run removed")


def start_standins(demo: Demo) -> tuple[Any, Any]:
    from pipelines.standins.sap import SapServer
    from pipelines.standins.smtp import SmtpSink

    with stage("SAP stand-in and SMTP sink"):
        sap = SapServer().start()
        demo.started.append(sap)
        smtp = SmtpSink().start()
        demo.started.append(smtp)
        demo.env.update(
            ORCHESTRATOR_SAP_URL=sap.url,
            ORCHESTRATOR_SMTP_HOST="127.0.0.1",
            ORCHESTRATOR_SMTP_PORT=str(smtp.port),
            ORCHESTRATOR_SMTP_FROM="orchestrator@example.com",
            ORCHESTRATOR_SMTP_TO=PLANNING_OFFICE,
            ORCHESTRATOR_REPORT_TO=REPORT_RECIPIENT,
        )
        for name in ("ORCHESTRATOR_SMTP_USER", "ORCHESTRATOR_SMTP_STARTTLS"):
            demo.env.pop(name, None)
        s = sap.state
        say(
            f"    SAP   {sap.url}  (503 for {s.failure_rate:.0%} of requests, "
            f"422 for {s.reject_rate:.0%} of work orders)"
        )
        say(f"    SMTP  127.0.0.1:{smtp.port}")
        return sap, smtp


async def import_sample(demo: Demo) -> Path:
    from pipelines.data.sample import write_sample
    from pipelines.handlers.csv_import import start_csv_import

    with stage(f"Import {demo.orders} work orders (one run each)"):
        path = write_sample(demo.home / "demo" / "work_orders.csv", demo.orders)
        began = time.perf_counter()
        conn = await connect(demo)
        try:
            demo.run_ids = await start_csv_import(conn, path)
        finally:
            await conn.close()
        took = time.perf_counter() - began
        say(f"    {path}: {len(demo.run_ids)} runs started in {took:.2f}s (one transaction)")
        return path


@dataclass(frozen=True)
class Progress:
    completed: int
    dead: int

    @property
    def done(self) -> int:
        return self.completed + self.dead


async def progress(conn: asyncpg.Connection, dead_letter_queue: str) -> Progress:
    """Runs completed (work order completed) and dead letters so far."""
    completed = await conn.fetchval("SELECT count(*) FROM work_orders WHERE status = 'completed'")
    dead = await conn.fetchval(
        "SELECT coalesce(sum(queue_length), 0) FROM pgmq.metrics($1)", dead_letter_queue
    )
    return Progress(int(completed), int(dead))


def progress_line(p: Progress, total: int, elapsed: float, sap: Any, smtp: Any, tty: bool) -> str:
    """One progress report: a bar redrawn in place on a terminal, a plain line otherwise."""
    counts = sap.state.stats()["by_status"]
    tail = (
        f"{p.completed} completed, {p.dead} dead-lettered · "
        f"SAP {counts.get('503', 0)}x503 {counts.get('422', 0)}x422 · "
        f"{len(smtp.messages)} mails · {elapsed:.0f}s"
    )
    if not tty:
        return f"    {p.done}/{total} runs done ({tail})"
    share = min(p.done / total, 1.0) if total else 1.0
    filled = int(share * BAR_WIDTH)
    bar = "█" * filled + "░" * (BAR_WIDTH - filled)
    # A line longer than the terminal wraps, and \r would then redraw only its last part.
    columns = shutil.get_terminal_size((100, 24)).columns
    line = f"    {bar} {p.done}/{total} runs done ({tail})"[: max(columns - 1, 20)]
    return f"\r{line}\x1b[K"


def workers_up(log_path: Path, offset: int) -> int:
    """Worker processes that said 'worker started' in the log since `offset`."""
    try:
        with log_path.open("rb") as log:
            log.seek(offset)
            return log.read().count(b'"worker started')
    except OSError:
        return 0


def starting_line(up: int, workers: int, elapsed: float, tty: bool) -> str:
    """What happens before the first run is done: the workers start (each imports the
    handlers and checks the applied pipelines) and the first runs go through their steps."""
    text = (
        f"    starting {workers} worker processes (importing handlers, checking the database): "
        f"{up}/{workers} up · {elapsed:.0f}s"
    )
    return f"\r{text}\x1b[K" if tty else text


async def spawn_workers(demo: Demo, pipeline: str | None) -> asyncio.subprocess.Process:
    """Start `orchestrator run --drain` (all pipelines, or one) logging to demo.log_path."""
    args = ["run", "--drain", "--workers", str(demo.workers), "--log-format", "json"]
    args += ["--pipelines", str(PIPELINES)] + (["--pipeline", pipeline] if pipeline else [])
    demo.log_path.parent.mkdir(parents=True, exist_ok=True)
    say(f"    $ orchestrator {' '.join(args)}   (log: {demo.log_path})")
    with demo.log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            *cli(*args),
            cwd=ROOT,
            env=demo.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    demo.started.append(proc)
    return proc


async def watch(
    demo: Demo, proc: asyncio.subprocess.Process, total: int, standins: tuple[Any, Any] | None
) -> Progress | None:
    """Wait for `proc` to exit (at most demo.timeout); with `standins`, show progress every
    second. Returns the last progress seen."""
    tty = demo.out.isatty()
    began = time.monotonic()
    last: Progress | None = None
    log_from = demo.log_path.stat().st_size if demo.log_path.exists() else 0
    conn = await connect(demo)
    try:
        while proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), timeout=1.0)
            elapsed = time.monotonic() - began
            if standins is not None:
                last = await progress(conn, demo.dead_letter_queue)
                up = workers_up(demo.log_path, log_from)
                line = (
                    progress_line(last, total, elapsed, *standins, tty)
                    if last.done or up >= demo.workers
                    else starting_line(up, demo.workers, elapsed, tty)
                )
                print(line, end="" if tty else "\n", file=demo.out, flush=True)
            if proc.returncode is None and elapsed > demo.timeout:
                await stop_process(proc)
                raise StageFailed(
                    "workers", f"not drained after {demo.timeout:.0f}s; see {demo.log_path}"
                )
    finally:
        await conn.close()
        if tty and standins is not None:
            print(file=demo.out)
    return last


async def run_workers(
    demo: Demo, total: int, standins: tuple[Any, Any] | None, pipeline: str | None = None
) -> None:
    """`orchestrator run --drain` until it exits; it must exit 0 with every run done."""
    began = time.monotonic()
    proc = await spawn_workers(demo, pipeline)
    last = await watch(demo, proc, total, standins)
    demo.started.remove(proc)
    if proc.returncode != 0:
        reason = f"exited with code {proc.returncode}: {last_error(demo.log_path)}"
        raise StageFailed("workers", f"orchestrator run {reason}")
    if last is not None and last.done < total:
        raise StageFailed("workers", f"orchestrator run stopped with {last.done}/{total} runs done")
    say(f"    drained in {time.monotonic() - began:.1f}s")


def last_error(log_path: Path) -> str:
    """The last line of the worker log that looks like an error (for a failure message)."""
    try:
        lines = log_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"(no log at {log_path})"
    for line in reversed(lines[-200:]):
        if "error" in line.lower():
            return line.strip()[:400]
    return lines[-1].strip()[:400] if lines else "(empty log)"


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM (the workers finish what they hold), then SIGKILL after the grace period."""
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), STOP_GRACE)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def daily_report(demo: Demo) -> None:
    import orchestrator

    with stage("Daily report (the reports pipeline, started by hand instead of at 06:00)"):
        conn = await connect(demo)
        try:
            run_id = await orchestrator.start("reports", {"period": "today"}, conn=conn)
        finally:
            await conn.close()
        say(f"    run {run_id}")
        await run_workers(demo, 1, None, pipeline="reports")
        conn = await connect(demo)
        try:
            body = await conn.fetchval(
                "SELECT body FROM reports WHERE delivered_at IS NOT NULL "
                "ORDER BY delivered_at DESC LIMIT 1"
            )
        finally:
            await conn.close()
        if body is None:
            raise StageFailed("daily report", "no delivered report in the reports table")
        for line in body.rstrip().splitlines():
            say(f"    | {line}")


async def pick_traced_run(demo: Demo) -> str | None:
    """A run whose SAP sync needed the most attempts (its trace shows retries)."""
    conn = await connect(demo)
    try:
        run_id = await conn.fetchval(
            "SELECT run_id::text FROM sap_sync ORDER BY attempts DESC, synced_at LIMIT 1"
        )
    finally:
        await conn.close()
    return run_id or (demo.run_ids[0] if demo.run_ids else None)


async def show_results(demo: Demo, sap: Any, smtp: Any) -> None:
    with stage("Status"):
        await run_cli(demo, "status", "--pipelines", str(PIPELINES))
    run_id = await pick_traced_run(demo)
    if run_id:
        with stage("Trace of the run with the most SAP attempts"):
            await run_cli(demo, "trace", run_id, "--pipelines", str(PIPELINES))
    with stage("Dead letters"):
        await run_cli(demo, "dlq", "list", "work_orders", "--pipelines", str(PIPELINES))
    stats = sap.state.stats()
    mails = smtp.stats()
    say("==> Summary")
    by_status = ", ".join(f"{n}x{code}" for code, n in sorted(stats["by_status"].items()))
    say(f"    SAP stand-in: {stats['received']} requests ({by_status}), {stats['orders']} orders")
    say(f"    SMTP sink:    {mails['messages']} mails ({mails['unique_message_ids']} Message-IDs)")
    say("    Try: .venv/bin/orchestrator status | dlq list work_orders | dlq replay work_orders")
    say("    The embedded PostgreSQL keeps running; .venv/bin/orchestrator db stop stops it.")


async def stop_started(demo: Demo) -> None:
    for thing in reversed(demo.started):
        with contextlib.suppress(Exception):
            if isinstance(thing, asyncio.subprocess.Process):
                await stop_process(thing)
            else:
                thing.stop()
    demo.started.clear()


async def run_demo(demo: Demo) -> None:
    await create_tables(demo)
    await apply_pipelines(demo)
    await reset(demo)
    try:
        sap, smtp = start_standins(demo)
        await import_sample(demo)
        with stage("Workers (orchestrator run --drain) until every run is done"):
            await run_workers(demo, len(demo.run_ids), (sap, smtp))
        await daily_report(demo)
        await show_results(demo, sap, smtp)
    finally:
        await stop_started(demo)


async def tables_only(dsn: str) -> None:
    await create_tables(Demo(dsn=dsn, orders=0, workers=1, timeout=0, home=Path.cwd()))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.demo",
        description="Run the work-order pipeline end to end (see pipelines/demo.py).",
    )
    parser.add_argument("--dsn", help="database URL (default: $DATABASE_URL, else embedded)")
    parser.add_argument("--orders", type=int, help="work orders to import (default 1000)")
    parser.add_argument("--workers", type=int, help="worker processes (default 2)")
    parser.add_argument(
        "--tables-only", action="store_true", help="only create the application tables"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        orders = args.orders or _env_int("ORCHESTRATOR_DEMO_ORDERS", 1000)
        workers = args.workers or _env_int("ORCHESTRATOR_DEMO_WORKERS", 2)
        timeout = float(_env_int("ORCHESTRATOR_DEMO_TIMEOUT", 600))
        if orders < 1 or workers < 1:
            raise StageFailed("settings", "--orders and --workers must be at least 1")
        dsn = find_database(args.dsn)
        if args.tables_only:
            asyncio.run(tables_only(dsn))
            return 0
        from orchestrator.db.embedded import home

        env = {**os.environ, "DATABASE_URL": dsn}
        demo = Demo(dsn, orders, workers, timeout, home(), env=env)
        began = time.monotonic()
        asyncio.run(run_demo(demo))
    except StageFailed as exc:
        say(f"demo: error: {exc}", out=sys.stderr)
        return 1
    except KeyboardInterrupt:
        say("demo: interrupted", out=sys.stderr)
        return 130
    say(f"Demo finished in {time.monotonic() - began:.0f}s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
