"""`orchestrator ui` as a user runs it: a subprocess serving the dashboard over a real database,
and one-line errors before serving when it cannot."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from orchestrator.spec import Pipeline
from tests.e2e.test_ops_cli import ROOT, one_line_error, orders, run
from tests.integration.ops import support

__all__ = ["orders"]  # the fixture, shared with the ops commands' tests


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_ui_serves_the_applied_pipelines(
    conn: asyncpg.Connection, dsn: str, orders: Pipeline, tmp_path: Path
) -> None:
    await support.dead_letter(conn, orders, "sync", support.new_run())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "ui",
            "--dsn",
            dsn,
            "--port",
            str(port),
            "--pipelines",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.strip() == f"orchestrator ui: http://127.0.0.1:{port}/"
        page = None
        deadline = time.monotonic() + 60
        while page is None and time.monotonic() < deadline:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/dead-letters?pipeline=orders")
            except httpx.TransportError:
                time.sleep(0.2)
        assert page is not None and page.status_code == 200
        assert 'class="letter"' in page.text and "actions enabled" in page.text
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert "Traceback" not in err


async def test_ui_refuses_before_serving(empty_dsn: str) -> None:
    one_line_error(run("ui", "--dsn", empty_dsn, "--port", "1"), 4, "orchestrator apply")
    one_line_error(
        run("ui", "--dsn", "postgresql://nobody:secret@127.0.0.1:1/none"), 3, "127.0.0.1"
    )
    done = run("ui", "--port", "99999")
    assert done.returncode == 2 and "invalid port" in done.stderr
