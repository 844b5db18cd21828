"""`--workers 2`: a supervisor runs two worker processes, restarts one that was killed,
stops both on SIGTERM, and serves the metrics of both."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import urllib.request

import asyncpg

from tests.integration.process.support import (
    Project,
    Worker,
    assert_exactly_once,
    effect_count,
    send_runs,
    wait_until,
)


def _events(worker: Worker) -> list[dict[str, str]]:
    events = []
    for line in worker.output().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def _started(worker: Worker) -> list[str]:
    """Worker indexes of the 'worker started' lines, in order."""
    return [e["worker"] for e in _events(worker) if e["msg"].startswith("worker started")]


def _pids(worker: Worker) -> list[int]:
    """Process ids of the workers started, in order."""
    found = (re.match(r"worker started: pid (\d+)", e["msg"]) for e in _events(worker))
    return [int(m.group(1)) for m in found if m]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _wait_started(worker: Worker, count: int) -> None:
    async def started() -> bool:
        return len(_started(worker)) >= count

    await wait_until(started, 60, f"{count} worker starts")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_two_workers_drain_and_a_killed_one_is_replaced(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    chain = project.pipeline("chain")
    runs = await send_runs(dsn, "chain", [{"n": n, "sleep": 0.2} for n in range(30)])
    supervisor = project.start(
        "run", "--dsn", dsn, "--pipeline", "chain", "--workers", "2", "--drain", "--log-format=json"
    )
    try:
        await _wait_started(supervisor, 2)
        assert sorted(_started(supervisor)) == ["0", "1"]

        async def busy() -> bool:
            return await effect_count(dsn) >= 3

        await wait_until(busy, 60, "handlers to run")
        first, _ = _pids(supervisor)
        os.kill(first, signal.SIGKILL)
        assert supervisor.wait(120) == 0, supervisor.output()
    finally:
        supervisor.stop()
    messages = [e["msg"] for e in _events(supervisor)]
    assert any("was killed by SIGKILL; restarting it" in m for m in messages), messages
    assert len(_started(supervisor)) == 3
    await assert_exactly_once(dsn, chain, runs)


async def test_workers_use_the_dsn_given_on_the_command_line_over_the_environment(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    chain = project.pipeline("chain")
    runs = await send_runs(dsn, "chain", [{"n": n} for n in range(5)])
    elsewhere = {"ORCHESTRATOR_DSN": "postgresql://nobody@127.0.0.1:1/nowhere"}
    result = project.cli(
        "run", "--dsn", dsn, "--pipeline", "chain", "--workers", "2", "--drain", env=elsewhere
    )
    assert result.returncode == 0, result.stdout + result.stderr
    await assert_exactly_once(dsn, chain, runs)


async def test_sigterm_stops_every_worker_and_metrics_cover_both(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    port = _free_port()
    await send_runs(dsn, "chain", [{"n": n} for n in range(10)])
    supervisor = project.start(
        "run",
        "--dsn",
        dsn,
        "--pipeline",
        "chain",
        "--workers=2",
        f"--metrics-port={port}",
        "--log-format=json",
    )
    try:
        await _wait_started(supervisor, 2)

        async def done() -> bool:
            return await effect_count(dsn, "third") == 10

        await wait_until(done, 60, "the runs to complete")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert 'orchestrator_step_depth{pipeline="chain",step="first"} 0.0' in metrics
        assert "orchestrator_build_info" in metrics
        handoffs = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("orchestrator_handoffs_total{")
        ]
        assert sum(handoffs) == 30, metrics

        pids = _pids(supervisor)
        supervisor.process.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0, supervisor.output()
        assert len(pids) == 2 and not any(_alive(pid) for pid in pids)
    finally:
        supervisor.stop()
    assert "worker stopped" in [e["msg"] for e in _events(supervisor)]


async def test_ctrl_c_reaching_the_whole_process_group_counts_once(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    """A terminal's Ctrl-C signals the supervisor and its workers at once: each worker gets
    the signal and the supervisor's stop command, and must still stop gracefully."""
    supervisor = project.start(
        "run", "--dsn", dsn, "--workers=2", "--log-format=json", session=True
    )
    try:
        await _wait_started(supervisor, 2)
        os.killpg(supervisor.process.pid, signal.SIGINT)
        assert supervisor.wait(60) == 0, supervisor.output()
    finally:
        supervisor.stop()
    messages = [e["msg"] for e in _events(supervisor)]
    assert messages.count("worker stopped") == 2
    assert not any("exiting now" in m for m in messages), messages


async def test_a_second_ctrl_c_makes_every_process_exit_at_once(
    project: Project, applied: asyncpg.Connection, dsn: str
) -> None:
    await send_runs(dsn, "slow", [{"sleep": 20} for _ in range(4)])
    supervisor = project.start(
        "run", "--dsn", dsn, "--pipeline=slow", "--workers=2", "--log-format=json", session=True
    )
    try:

        async def all_taken() -> bool:
            held = "SELECT count(*) FROM pgmq.q_slow__only WHERE vt > now()"
            return await applied.fetchval(held) == 4

        await wait_until(all_taken, 60, "the workers to take all 4 messages")
        await _wait_started(supervisor, 2)  # both have their signal handlers in place
        os.killpg(supervisor.process.pid, signal.SIGINT)

        async def stopping() -> bool:
            return sum("SIGINT received" in e["msg"] for e in _events(supervisor)) == 3

        await wait_until(stopping, 60, "the supervisor and both workers to start stopping")
        os.killpg(supervisor.process.pid, signal.SIGINT)
        assert supervisor.wait(60) == 128 + signal.SIGINT, supervisor.output()
    finally:
        supervisor.stop()
    released = "SELECT count(*) FROM pgmq.q_slow__only WHERE vt <= now()"
    assert await applied.fetchval(released) == 4  # given back, not left for 60s
    assert await effect_count(dsn) == 0
