"""One worker process: a pool, a consumer per step, wake-ups, upkeep, signals and drain.

Lifecycle (`Worker.run`):

1. create the asyncpg pool (sized for the steps' concurrency; a connection taken back costs
   no reset round trip unless a handler had it, `pgconn.reset_if_lent`), one `StepConsumer`
   per step, the `WakeupListener`, the `VisibilityClock` (one statement for all the steps:
   when each queue next holds a visible message) and the upkeep `Leader`; everything runs as
   tasks on one loop;
2. run until `stopping` is set: by SIGTERM/SIGINT, by the supervisor (``stop`` on stdin, or
   stdin closing because the supervisor is gone), by drain mode once the queues are empty, or
   because a task failed (the process then stops loudly instead of running half-alive);
3. consumers stop reading and finish the handlers they run, for up to the shutdown timeout;
   a second signal (or ``now`` from the supervisor) cuts that short;
4. consumers still busy are cancelled: they release their messages (visible again at once)
   before they return; then the side tasks stop and the pool closes.

Exit status: 0 after a clean stop or drain, 1 when a task failed, 128+signal after a second
signal.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from orchestrator.db import create_pool
from orchestrator.db.named_sql import named_queries
from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.observe.logging import step_logger
from orchestrator.runtime.flow import FLOW_CHANNEL
from orchestrator.runtime.heartbeat import Heartbeat
from orchestrator.runtime.leader import Leader, upkeep_jobs
from orchestrator.runtime.pgconn import SESSION_SETTINGS, PoolConnection, reset_if_lent
from orchestrator.runtime.solitude import Solitude
from orchestrator.runtime.visibility import VisibilityClock
from orchestrator.runtime.wakeup import (
    POLL_WITHOUT_LISTEN,
    WakeupListener,
    listen_dsn,
    wait_for_event,
)
from orchestrator.spec import HandlerInfo, Pipeline, ResolvedStep, topics

_log = logging.getLogger(__name__)

SPARE_CONNECTIONS = 2
"""Pool connections beyond the steps' concurrency (heartbeat, visibility clock, drain checks)."""

LEASE_CONNECTIONS = 4
"""Pool connections for lease extensions while every batch holds its own, at most one per
step: an extension that finds none waits (up to its period) and the batch's row locks keep its
messages meanwhile, so more would only add connections a fleet cannot afford."""

IDLE_CONNECTION_LIFETIME = 15.0
"""Seconds a pool connection stays open unused: what a burst opened (a worker's start, when
every consumer reads once) goes back to the server soon, so that workers of a fleet larger than
the server's max_connections take turns instead of holding idle connections for minutes. An
idle worker keeps one: the visibility clock and the heartbeat use it every 10 s."""

CONNECT_PATIENCE: float | None = None
"""How long the pool waits out a server that refuses connections for now (too many clients,
starting up): for as long as it takes, so a worker never dies of a full server."""

CONSUMER_POLL = 3600.0
"""Seconds a consumer of a worker waits, idle, for a wake-up before it reads anyway: the
VisibilityClock tells it when to read, so this is only a backstop."""

UNNOTIFIED_POLL = 1.0
"""Seconds between the reads of an idle consumer whose queue sends no insert notifications
(``queues.notify: false``): nothing else tells it of new messages."""

DRAIN_CHECK_INTERVAL = 0.5
RELEASE_TIMEOUT = 10.0
"""Seconds cancelled consumers get to give their messages back."""
POOL_CLOSE_TIMEOUT = 10.0
SIDE_TASK_GRACE = 5.0
"""Seconds the wake-up and upkeep tasks get to end by themselves (upkeep gives its leases
up) before they are cancelled."""

_REMAINING = named_queries("orchestrator.runtime")["remaining_messages"]


@dataclass(frozen=True)
class StepPlan:
    """A step this process consumes, with its imported handler."""

    pipeline: Pipeline
    step: ResolvedStep
    handler: HandlerInfo


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process needs; the CLI builds it from options and pipeline files."""

    dsn: str
    steps: tuple[StepPlan, ...]
    concurrency: int | None = None
    """Overrides every step's `concurrency` when set."""
    drain: bool = False
    shutdown_timeout: float = 30.0
    poll_interval: float = 10.0
    """Seconds between the safety checks of the queues (one statement for all the steps);
    notifications and the announced visibility of delayed messages and retries start work
    sooner."""
    metrics_port: int | None = None
    """Serve /metrics from this process (single-process mode)."""
    supervised: bool = False
    """Started by a supervisor: obey its commands on stdin, stop when stdin closes."""
    count_metrics: bool = False
    """Update the Prometheus counters (also when a supervisor serves them)."""
    listen_dsn: str | None = None
    """Where to LISTEN for wake-ups when `dsn` goes through a transaction pooler."""

    @property
    def pipelines(self) -> tuple[Pipeline, ...]:
        """The pipelines of the selected steps, each once, in selection order."""
        seen: dict[str, Pipeline] = {}
        for plan in self.steps:
            seen.setdefault(plan.pipeline.name, plan.pipeline)
        return tuple(seen.values())

    def step_concurrency(self, step: ResolvedStep) -> int:
        return self.concurrency or step.concurrency

    @property
    def pool_size(self) -> int:
        """Connections: each concurrent batch holds one, plus a few for lease extensions (one
        per step, at most `LEASE_CONNECTIONS`) and the side tasks (`SPARE_CONNECTIONS`)."""
        busy = sum(self.step_concurrency(p.step) for p in self.steps)
        return busy + min(len(self.steps), LEASE_CONNECTIONS) + SPARE_CONNECTIONS


def queue_owners(pipelines: Iterable[Pipeline]) -> dict[str, tuple[str, str]]:
    """Queue name -> (pipeline, step) for step queues and (pipeline, "") for dead letters."""
    owners: dict[str, tuple[str, str]] = {}
    for pipeline in pipelines:
        for step in pipeline.steps:
            owners[pipeline.queue_name(step)] = (pipeline.name, step)
        owners.setdefault(pipeline.dead_letter_queue, (pipeline.name, ""))
    return owners


class Worker:
    """Runs the consumers of one process; see the module docstring for the lifecycle."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._signals = 0
        self._immediate: int | None = None
        self._failed = False
        self._failed_code = 1
        self.drained = False
        self.consumers: list[Any] = []

    async def run(self) -> int:
        """Run until stopped; returns the process exit status."""
        metrics_server = None
        if self.config.metrics_port is not None:
            metrics_server = serve_metrics(
                self.config.metrics_port, self.config.dsn, self.config.pipelines
            )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            # min_size 0: connections open on demand, so no background task keeps failing (and
            # logging) to refill the pool while the database is down.
            pool = await create_pool(
                self.config.dsn,
                min_size=0,
                max_size=self.config.pool_size,
                max_inactive_connection_lifetime=IDLE_CONNECTION_LIFETIME,
                patience=CONNECT_PATIENCE,
                server_settings=SESSION_SETTINGS,
                connection_class=PoolConnection,
                reset=reset_if_lent,
            )
            try:
                await self._serve(pool)
            finally:
                await _close_pool(pool)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
        if self._immediate is not None:
            return 128 + self._immediate
        if self._failed:
            return self._failed_code
        return 0

    # -- lifecycle -------------------------------------------------------------------------

    async def _serve(self, pool: asyncpg.Pool) -> None:
        listen = await listen_dsn(self.config.dsn, self.config.listen_dsn)
        poll = self.config.poll_interval
        if listen is None:
            poll = min(poll, POLL_WITHOUT_LISTEN)
            _log.warning(
                "the database URL goes through a transaction pooler, where LISTEN cannot work: "
                "polling every %gs instead (--listen-dsn with a direct URL gives wake-ups)",
                poll,
            )
        unheard = None if listen is not None else poll  # without LISTEN, consumers poll
        solitude = Solitude()  # one per process: a suspect runs alone in it
        self.consumers = [
            self._consumer(pool, plan, unheard, solitude) for plan in self.config.steps
        ]
        clock = VisibilityClock(pool, self.consumers, self.config.poll_interval)
        for consumer in self.consumers:
            consumer.on_empty = clock.request
        _ring_successors(self.consumers, self.config.pipelines)

        def listening() -> None:
            # After a reconnect only the consumers whose queues hold visible messages read:
            # waking all of them made every worker of a fleet that lost its connections to a
            # full server open its whole pool at once, and the server stayed full. Flow gates
            # hear again what they may have missed (a freed slot, a resume).
            clock.request()
            self._flow_notified("")

        listener = WakeupListener(
            listen or self.config.dsn,
            self.consumers if listen else (),
            on_listening=listening,
        )
        if listen is not None:
            listener.also_listen(FLOW_CHANNEL, self._flow_notified)
            for consumer in self.consumers:
                consumer.flow.notified = True  # freed slots and resumes are announced
        leader = Leader(
            self.config.dsn, upkeep_jobs(self.config.pipelines, schedules=not self.config.drain)
        )
        consumer_tasks = {
            asyncio.create_task(c.run(self.stopping), name=f"consumer {c.queue}")
            for c in self.consumers
        }
        side_tasks = {
            asyncio.create_task(listener.run(self.stopping), name="wake-ups"),
            asyncio.create_task(clock.run(self.stopping), name="visibility"),
            asyncio.create_task(leader.run(self.stopping), name="upkeep"),
            asyncio.create_task(
                Heartbeat(pool, [c.queue for c in self.consumers]).run(self.stopping),
                name="heartbeat",
            ),
        }
        if self.config.drain:
            side_tasks.add(asyncio.create_task(self._drain_watch(pool), name="drain"))
        if self.config.supervised:
            side_tasks.add(asyncio.create_task(self._supervisor_link(), name="supervisor link"))
        _log.info(
            "worker started: pid %d, %d step(s) (%s), pool of %d connections%s",
            os.getpid(),
            len(self.consumers),
            ", ".join(c.queue for c in self.consumers),
            self.config.pool_size,
            ", draining" if self.config.drain else "",
        )
        try:
            await self._until_stopping(consumer_tasks | side_tasks)
            await self._finish(consumer_tasks)
            if not self._hurry.is_set():  # wake-ups and upkeep end by themselves on `stopping`
                ending = {t for t in side_tasks if t.get_name() in ("wake-ups", "upkeep")}
                if ending:
                    await asyncio.wait(ending, timeout=SIDE_TASK_GRACE)
        finally:
            await _cancel_all(consumer_tasks | side_tasks, RELEASE_TIMEOUT)
            self._report(consumer_tasks)

    def _flow_notified(self, payload: str) -> None:
        for consumer in self.consumers:
            consumer.flow.wake(payload)

    def _consumer(
        self, pool: asyncpg.Pool, plan: StepPlan, poll: float | None, solitude: Solitude
    ) -> Any:
        """A step's consumer; `poll` None when insert notifications wake it (it then reads on
        its own only as a safety net), else its polling interval."""
        from orchestrator.runtime.consumer import StepConsumer

        metrics = None
        if self.config.count_metrics or self.config.metrics_port is not None:
            from orchestrator.observe.metrics import runtime_metrics

            metrics = runtime_metrics()
        return StepConsumer(
            pool,
            plan.pipeline,
            plan.step,
            plan.handler,
            concurrency=self.config.step_concurrency(plan.step),
            poll_interval=poll
            or (CONSUMER_POLL if plan.pipeline.queues.notify.enabled else UNNOTIFIED_POLL),
            metrics=metrics,
            logger=step_logger(
                "orchestrator.runtime.consumer", pipeline=plan.pipeline.name, step=plan.step.name
            ),
            solitude=solitude,
        )

    async def _until_stopping(self, tasks: set[asyncio.Task[None]]) -> None:
        """Wait for `stopping`; a task that ends before it is a failure and stops the rest."""
        watched: set[asyncio.Task[Any]] = set(tasks)
        stop: asyncio.Task[Any] = asyncio.create_task(self.stopping.wait())
        try:
            while not self.stopping.is_set():
                done, _ = await asyncio.wait(watched | {stop}, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {stop}:
                    watched.discard(task)
                    self._ended_early(task)
        finally:
            stop.cancel()

    def _ended_early(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            error: BaseException | None = asyncio.CancelledError()
        else:
            error = task.exception()
        if error is None and not task.get_name().startswith("consumer"):
            return  # side tasks return early by design (nothing to listen to, stdin closed)
        self._failed = True
        if error is None:
            _log.error("%s stopped unexpectedly; stopping the worker", task.get_name())
        elif isinstance(error, OrchestratorError):
            # A missing queue (exit 4: restarting cannot fix it) or too many stuck handler
            # threads (exit 1: a new process can): one line, no traceback.
            self._failed_code = error.exit_code
            _log.error("%s; stopping the worker", error)
        else:
            _log.error(
                "%s failed; stopping the worker",
                task.get_name(),
                exc_info=(type(error), error, error.__traceback__),
            )
        self.stopping.set()

    async def _finish(self, consumer_tasks: set[asyncio.Task[None]]) -> None:
        """Let running handlers finish within the shutdown timeout (or until told to hurry)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_timeout
        remaining = {t for t in consumer_tasks if not t.done()}
        hurry = asyncio.create_task(self._hurry.wait())
        try:
            while remaining and not self._hurry.is_set():
                left = deadline - loop.time()
                if left <= 0:
                    _log.warning(
                        "shutdown timeout (%gs) passed with %d message(s) in flight; "
                        "cancelling them (they go back to their queues)",
                        self.config.shutdown_timeout,
                        self.in_flight,
                    )
                    break
                done, _ = await asyncio.wait(
                    remaining | {hurry}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                remaining -= done
        finally:
            hurry.cancel()

    def _report(self, consumer_tasks: set[asyncio.Task[None]]) -> None:
        for task in consumer_tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                if not self._failed:
                    error = task.exception()
                    assert error is not None
                    _log.error(
                        "%s failed while stopping",
                        task.get_name(),
                        exc_info=(type(error), error, error.__traceback__),
                    )
                self._failed = True
        _log.info("worker stopped%s", " (drained)" if self.drained else "")

    @property
    def in_flight(self) -> int:
        """Messages the consumers of this process hold right now."""
        return sum(int(c.in_flight) for c in self.consumers)

    # -- stop requests ---------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            _log.info(
                "%s received: finishing in-flight work (up to %gs); send it again to exit now",
                name,
                self.config.shutdown_timeout,
            )
            self.stopping.set()
        else:
            self.exit_now(signum)

    def exit_now(self, signum: int) -> None:
        """Stop at once: cancel running handlers (their messages are released)."""
        if self._immediate is None:
            _log.warning(
                "%s: exiting now; %d message(s) go back to their queues",
                signal.Signals(signum).name,
                self.in_flight,
            )
            self._immediate = signum
        self.stopping.set()
        self._hurry.set()

    async def _supervisor_link(self) -> None:
        """Commands from the supervisor, one per line on stdin: ``stop`` or ``now <signal>``.

        Stdin closing means the supervisor is gone (even killed): stop gently, like ``stop``.
        Signals that reach this process directly (a terminal's Ctrl-C, a service manager
        signalling the whole group) are counted by `_on_signal` alone, so a signal and the
        supervisor's forwarded ``stop`` never add up to "second signal".
        """
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
        )
        try:
            while True:
                line = await reader.readline()
                words = line.decode(errors="replace").split()
                if not line:
                    if not self.stopping.is_set():
                        _log.warning("the supervisor is gone; stopping")
                    self.stopping.set()
                    return
                if words[:1] == ["stop"]:
                    self.stopping.set()
                elif words[:1] == ["now"]:
                    signum = int(words[1]) if len(words) > 1 and words[1].isdigit() else 15
                    self.exit_now(signum)
        finally:
            transport.close()

    # -- drain -----------------------------------------------------------------------------

    async def _drain_watch(self, pool: asyncpg.Pool) -> None:
        """Stop once the selected queues hold no message at all and nothing is in flight here.

        A message stays a row of its queue until the hand-off that archives it commits (and
        that commit inserts the next steps' messages), so an empty set of queues means no work
        is left anywhere: not visible, not in flight in another process, not delayed.
        """
        queues = [c.queue for c in self.consumers]
        while not self.stopping.is_set():
            try:
                remaining = await pool.fetchval(_REMAINING, queues, timeout=30)
            except Exception as exc:  # the database is restarting: the consumers wait too
                _log.debug("drain check failed (%s: %s); trying again", type(exc).__name__, exc)
                remaining = None
            if remaining == 0 and self.in_flight == 0:
                self.drained = True
                _log.info("drained: the queues are empty")
                self.stopping.set()
                return
            await wait_for_event(self.stopping, DRAIN_CHECK_INTERVAL)


def serve_metrics(port: int, dsn: str, pipelines: Iterable[Pipeline]) -> Any:
    """Start /metrics on `port` (counters of this process, or of all workers in multiprocess
    mode, plus queue gauges read at scrape time); returns the server."""
    from orchestrator.observe.metrics import QueueCollector, fetch_queue_rows, serve

    owners = queue_owners(pipelines)
    try:
        server = serve(port, QueueCollector(lambda: fetch_queue_rows(dsn), owners.get))
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on port {port}: {exc.strerror or exc}") from None
    _log.info("metrics on http://127.0.0.1:%d/metrics", port)
    return server


async def run_worker(config: WorkerConfig) -> int:
    """Run one worker process until it is stopped; returns its exit status."""
    return await Worker(config).run()


async def _cancel_all(tasks: Iterable[asyncio.Task[None]], timeout: float) -> None:
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        _, stuck = await asyncio.wait(pending, timeout=timeout)
        for task in stuck:
            _log.error("%s did not stop within %gs", task.get_name(), timeout)


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT)
    except Exception:  # connections stuck or already broken
        pool.terminate()


def _ring_successors(consumers: list[Any], pipelines: Iterable[Pipeline] = ()) -> None:
    """After a consumer's batch hands messages on, this process's consumers of the next steps
    read at once, and so do its consumers of the entry steps of pipelines subscribed to a
    routing key the step publishes: within a worker a hand-off never waits for a (throttled)
    notification."""
    by_step = {(c.target.pipeline, c.target.step): c for c in consumers}
    subscribers = [(p.subscriptions, (p.name, p.entry_step)) for p in pipelines if p.subscriptions]
    for consumer in consumers:
        pipeline = consumer.target.pipeline
        names = [(pipeline, name) for name in consumer.successors]
        keys = consumer.target.publish or ()
        names += [
            entry
            for patterns, entry in subscribers
            if any(topics.matches(pattern, key) for pattern in patterns for key in keys)
        ]
        nexts = tuple(dict.fromkeys(by_step[n] for n in names if n in by_step))
        if nexts:
            consumer.on_sent = functools.partial(_ring_all, nexts)


def _ring_all(consumers: tuple[Any, ...]) -> None:
    for consumer in consumers:
        consumer.ring()
