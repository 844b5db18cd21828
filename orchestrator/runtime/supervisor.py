"""Several worker processes under one supervisor (``orchestrator run --workers N``).

Handlers are Python, so one process uses one core; the supervisor starts N copies of the
worker command (the same CLI with ``--workers 1``), each marked with its index in
`WORKER_ENV`. It talks to them through their stdin, one command per line:

- ``stop``: finish in-flight work and exit (the first SIGTERM/SIGINT the supervisor gets);
- ``now <signal>``: exit at once, releasing held messages (the second signal).

A worker whose stdin closes (the supervisor died, even by SIGKILL) stops gracefully, so
workers never outlive their supervisor for long. Commands go through stdin instead of
forwarded signals because a terminal or a service manager often signals the whole process
group: a worker must not count that signal plus a forwarded copy as "signalled twice".

A worker that exits with a failure is restarted after a backoff (1s, doubling to 30s; reset
after a minute of healthy running), never in a tight loop. Exit codes 2 (usage) and 4
(database not prepared) cannot be fixed by restarting: the supervisor stops every worker and
exits with that code. With ``--drain`` a worker exiting 0 is done; the supervisor exits when
every worker is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from orchestrator.runtime.wakeup import wait_for_event
from orchestrator.spec import Pipeline

_log = logging.getLogger(__name__)

WORKER_ENV = "ORCHESTRATOR_WORKER"
"""Set in each worker's environment to its index (0..N-1)."""

FATAL_EXIT_CODES = frozenset({2, 4})
RESTART_INITIAL = 1.0
RESTART_CAP = 30.0
HEALTHY_AFTER = 60.0
"""A worker that ran this long before failing restarts after the initial backoff again."""
KILL_AFTER = 15.0
"""Seconds after ``now`` before workers still running are killed."""


class Supervisor:
    """Starts, restarts and stops N worker processes."""

    def __init__(
        self,
        command: Sequence[str],
        workers: int,
        *,
        env: Mapping[str, str] | None = None,
        drain: bool = False,
        on_exit: Callable[[int], None] | None = None,
        restart_initial: float = RESTART_INITIAL,
        restart_cap: float = RESTART_CAP,
    ) -> None:
        self._command = list(command)
        self._count = workers
        self._env = dict(os.environ if env is None else env)
        self._drain = drain
        self._on_exit = on_exit
        self._restart_initial = restart_initial
        self._restart_cap = restart_cap
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self._signals = 0
        self._immediate: int | None = None
        self._fatal: int | None = None
        self.starts = 0
        """Worker processes started so far (restarts included)."""

    @property
    def pids(self) -> dict[int, int]:
        """Worker index -> pid of the processes running now."""
        return {i: p.pid for i, p in self._children.items()}

    async def run(self) -> int:
        """Run the workers until they all exit; returns the supervisor's exit status."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        _log.info("starting %d worker processes", self._count)
        try:
            await asyncio.gather(*(self._slot(i) for i in range(self._count)))
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        if self._immediate is not None:
            return 128 + self._immediate
        return self._fatal or 0

    def stop(self) -> None:
        """Ask every worker to finish its in-flight work and exit."""
        self._stopping.set()
        for child in self._children.values():
            _tell(child, "stop")

    # -- one worker slot -------------------------------------------------------------------

    async def _slot(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopping.is_set():
            started = loop.time()
            code = await self._run_child(index)
            if self._stopping.is_set() or (code == 0 and self._drain):
                return
            if code in FATAL_EXIT_CODES:
                _log.error("worker %d cannot start (exit %d); stopping all workers", index, code)
                self._fatal = code
                self.stop()
                return
            if loop.time() - started >= HEALTHY_AFTER:
                failures = 0
            delay = min(self._restart_cap, self._restart_initial * 2**failures)
            failures += 1
            _log.warning("worker %d %s; restarting it in %gs", index, _describe_exit(code), delay)
            await wait_for_event(self._stopping, delay)

    async def _run_child(self, index: int) -> int | None:
        try:
            child = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                env={**self._env, WORKER_ENV: str(index)},
            )
        except OSError as exc:
            _log.error("cannot start worker %d: %s", index, exc)
            return None
        self.starts += 1
        self._children[index] = child
        if self._immediate is not None:
            _tell(child, f"now {self._immediate}")
        elif self._stopping.is_set():
            _tell(child, "stop")
        try:
            return await child.wait()
        finally:
            del self._children[index]
            if self._on_exit is not None:
                self._on_exit(child.pid)

    # -- signals ---------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            _log.info("%s received: stopping the workers; send it again to exit now", name)
            self.stop()
            return
        _log.warning("%s received again: workers exit now", name)
        self._immediate = signum
        self._stopping.set()
        for child in self._children.values():
            _tell(child, f"now {signum}")
        asyncio.get_running_loop().call_later(KILL_AFTER, self._kill_all)

    def _kill_all(self) -> None:
        for index, child in list(self._children.items()):
            _log.error("worker %d did not exit; killing it", index)
            with contextlib.suppress(ProcessLookupError):
                child.kill()


def _tell(child: asyncio.subprocess.Process, command: str) -> None:
    if child.stdin is None or child.stdin.is_closing():
        return
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it has exited already
        child.stdin.write(f"{command}\n".encode())


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "could not be started"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


async def run_supervisor(
    command: Sequence[str],
    workers: int,
    *,
    env: Mapping[str, str],
    drain: bool = False,
    metrics_port: int | None = None,
    dsn: str = "",
    pipelines: Iterable[Pipeline] = (),
) -> int:
    """Run `workers` copies of `command`; with `metrics_port`, serve the metrics of all of
    them from this process (prometheus_client's multiprocess mode)."""
    env = dict(env)
    server: Any = None
    metrics_dir: str | None = None
    on_exit: Callable[[int], None] | None = None
    if metrics_port is not None:
        from orchestrator.observe.metrics import MULTIPROC_ENV, enable_multiprocess
        from orchestrator.runtime.worker import serve_metrics

        metrics_dir = tempfile.mkdtemp(prefix="orchestrator-metrics-")
        enable_multiprocess(metrics_dir)
        env[MULTIPROC_ENV] = metrics_dir
        server = serve_metrics(metrics_port, dsn, pipelines)
        on_exit = _mark_dead(metrics_dir)
    try:
        return await Supervisor(command, workers, env=env, drain=drain, on_exit=on_exit).run()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _mark_dead(directory: str) -> Callable[[int], None]:
    def mark(pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]

    return mark
