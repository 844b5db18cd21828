"""`python -m pipelines.demo` as a user runs it (small sample, fresh database), twice in a row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from pipelines.data.sample import generate
from pipelines.standins.sap import rejected

ROOT = Path(__file__).resolve().parents[2]
ORDERS = 40
REJECT_RATE = 0.1


def run_demo(dsn: str, home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ORCHESTRATOR_HOME": str(home),
        "ORCHESTRATOR_DEMO_ORDERS": str(ORDERS),
        "ORCHESTRATOR_SAP_REJECT_RATE": str(REJECT_RATE),
    }
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "pipelines.demo", "--dsn", dsn, *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )


@pytest.mark.slow  # two demo runs, about 45 s
async def test_the_demo_runs_twice_in_a_row(empty_dsn: str, tmp_path: Path) -> None:
    refused = sorted(
        r["work_order_no"] for r in generate(ORDERS) if rejected(r["work_order_no"], REJECT_RATE)
    )
    assert refused, "the sample should contain orders the SAP stand-in refuses"
    for attempt in (1, 2):
        done = run_demo(empty_dsn, tmp_path)
        output = done.stdout + done.stderr
        assert done.returncode == 0, (
            f"run {attempt} failed:\n{output[-3000:]}{worker_log(tmp_path)}"
        )
        assert "Traceback" not in output
        assert f"{ORDERS}/{ORDERS} runs done" in done.stdout
        assert "$ orchestrator status" in done.stdout
        assert "$ orchestrator trace " in done.stdout
        assert "$ orchestrator dlq list work_orders" in done.stdout
        assert "Work orders imported on" in done.stdout  # the daily report's text
        assert done.stdout.rstrip().endswith("then open http://127.0.0.1:8765/")
        for number in refused:
            assert number in done.stdout  # each refused order is listed as a dead letter
    assert (tmp_path / "demo" / "work_orders.csv").exists()
    await check_data(empty_dsn, set(refused))


def worker_log(home: Path) -> str:
    """The end of the demo's worker log, for a failure message."""
    log = home / "demo" / "workers.log"
    lines = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
    return "\nworker log:\n" + "\n".join(line[:300] for line in lines)


async def check_data(dsn: str, refused: set[str]) -> None:
    """After the second run: each order completed or dead-lettered once, nothing doubled."""
    conn = await asyncpg.connect(dsn)
    try:
        completed = {
            r[0]
            for r in await conn.fetch(
                "SELECT work_order_no FROM work_orders WHERE status = 'completed'"
            )
        }
        dead = await conn.fetchval("SELECT count(*) FROM pgmq.q_work_orders_dlq")
        labelled = await conn.fetchval("SELECT count(*) FROM barcodes")
        mailed = await conn.fetchval("SELECT count(*) FROM notifications WHERE kind = 'work_order'")
        reports = await conn.fetchval("SELECT count(*) FROM reports WHERE delivered_at IS NOT NULL")
    finally:
        await conn.close()
    assert not refused & completed
    assert len(completed) + dead == ORDERS
    assert labelled == mailed == ORDERS
    assert reports == 1


def test_tables_only_creates_the_application_tables(empty_dsn: str, tmp_path: Path) -> None:
    done = run_demo(empty_dsn, tmp_path, "--tables-only")
    assert done.returncode == 0, done.stderr
    again = run_demo(empty_dsn, tmp_path, "--tables-only")
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dsn", "postgresql://nobody@127.0.0.1:1/none"], "demo: error: Application tables"),
    ],
)
def test_a_failing_stage_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    env = {**os.environ, "ORCHESTRATOR_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
