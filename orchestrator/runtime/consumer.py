"""`StepConsumer`: runs one step's handler over its queue, in batches, inside one process.

Interface (the process layer builds on it)::

    consumer = StepConsumer(pool, pipeline, step, handler_info,
                            concurrency=None, poll_interval=1.0, metrics=None, logger=None)
    consumer.queue          # the step's queue name, e.g. "work_orders__barcode"
    consumer.wake()         # a NOTIFY for consumer.queue arrived: read now (event-loop thread)
    consumer.visible_in(s)  # the queue next holds a visible message in s seconds (None: never)
    consumer.on_empty = f   # called after each empty read (the worker's VisibilityClock.request)
    consumer.on_sent = f    # called after a committed batch sent messages to the next steps
    consumer.ring()         # this process handed messages on to consumer.queue: read now
    await consumer.run(stopping)   # until `stopping` is set and in-flight work is done
    consumer.in_flight      # messages read and not yet finished
    consumer.abandoned      # plain `def` handler calls given up on that still run

The consumer is split as a worker of river is (see docs/architecture.md, "The consumer"):

- this module: the read loop and its wake-ups (`_consume`, with the step's read path in ONE
  method, `_read`) and the isolation of suspects (`_dispatch`);
- `batch`: one batch's transaction as a state machine (claim, handlers, complete, COMMIT) and
  the one classifier of the errors that end a batch early;
- `attempt`: one handler call (async, thread, deadline) returning an `Attempt`;
- `bookkeeping`: what each attempt means (hand-off, retry, dead letter), metrics and logs;
- `lease`: the lease extension; `timers`: the doorbell and the deadline.

`run` starts `concurrency` loops (the step's, or the override); each holds one pool connection
while its queue has work, and for LINGER seconds after it runs dry (the pool should have
`concurrency` connections per consumer plus a spare for lease extensions; a smaller pool is
shared in turns, more slowly). A loop reads a batch of `batch_size` messages (autocommit:
read_ct counts the attempt even if this process dies; the read's commit does not wait for its
WAL flush, the hand-off's COMMIT flushes it) and hands it off in one transaction; while the
queue is busy, each batch's `complete` call reads the next batch too.

Suspects run alone: a message whose previous read ended without a recorded outcome (its worker
died, its batch was rolled back or given back) runs in a batch of one, after its batch-mates'
batch; alone in its process too when that costs no waiting, or, once it has been read more
than ``max_attempts`` times, after waiting for it (`solitude`: a process's death takes every
message in flight in it). Only a run alone in the process is marked, committed, as such
(``headers.isolated``). Other suspects of the same read are given back unread (read_ct one
less) for later reads. A message that kills its process therefore costs its batch-mates at most
one extra attempt, and is dead-lettered (WorkerLost) once it has been read more than
``max_attempts`` times and its last lost read ran alone in its process.

Idle loops wait for `wake()`, for the moment `visible_in` announced, or `poll_interval`; after a
wake-up they also read once more a notification throttle window later, so messages whose
notification was throttled are not left for the poll. In a worker, the VisibilityClock
(`visibility`) calls `visible_in` and the poll interval is long: an idle consumer sends nothing.

Database errors (a restart, a killed backend) never end `run`: the loop logs,
backs off (capped exponential with jitter) and carries on; unfinished messages come back at
their vt. A missing queue ends `run` with QueueMissing (the worker stops, exit 4). When `run`
is cancelled it rolls back its open transactions, gives back the messages it held (fenced by
read_ct) and re-raises CancelledError.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from orchestrator.errors import QueueMissing, TooManyAbandoned
from orchestrator.observe.logging import step_logger
from orchestrator.runtime import handoff
from orchestrator.runtime.attempt import Invoker
from orchestrator.runtime.batch import Batches, Session
from orchestrator.runtime.bookkeeping import Bookkeeper, Counters, is_suspect, proven_lost
from orchestrator.runtime.contracts import StepContracts
from orchestrator.runtime.flow import Admission, FlowGate
from orchestrator.runtime.handoff import StepMessage, StepTarget
from orchestrator.runtime.lease import Lease
from orchestrator.runtime.pgconn import Connection, is_connection_error, is_missing_queue
from orchestrator.runtime.retry import reconnect_delay
from orchestrator.runtime.solitude import Solitude
from orchestrator.runtime.timers import Doorbell, wait
from orchestrator.spec.handlers import HandlerInfo
from orchestrator.spec.models import Pipeline, ResolvedStep

RECHECK_MARGIN = 0.02
"""Seconds added to the notification throttle before the trailing re-check read."""

LINGER = 0.3
"""Seconds an idle loop keeps its connection after an empty read, waiting for a wake-up."""

ABANDONED_PER_LOOP = 2
"""Abandoned ``def`` handler calls per loop of the step a worker tolerates before it stops
to be replaced: past that, the stuck threads cost more than a new process."""


class StepConsumer:
    """Consumes one step's queue; see the module docstring."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        pipeline: Pipeline,
        step: ResolvedStep,
        handler: HandlerInfo,
        *,
        concurrency: int | None = None,
        poll_interval: float = 1.0,
        metrics: object | None = None,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        solitude: Solitude | None = None,
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        self._pool = pool
        self.solitude = solitude or Solitude()
        self._max_attempts = step.retry.max_attempts
        """Shared by the consumers of one process (the worker passes its own)."""
        self.queue: str = step.queue
        self.target = StepTarget.of(pipeline, step)
        self.successors: tuple[str, ...] = step.successors
        self.concurrency = concurrency or step.concurrency
        self.batch_size = step.batch_size
        self.poll_interval = poll_interval
        self.vt_seconds = max(1, math.ceil(step.visibility_timeout))
        notify = pipeline.queues.notify
        self._throttle = notify.throttle if notify.enabled and notify.throttle > 0 else None
        self._init_logging(logger, pipeline.name, step.name)
        counters = Counters(metrics, pipeline.name, step.name) if metrics else None
        self._counters = counters
        observe = counters.handler_seconds.observe if counters is not None else None
        contracts = StepContracts.of(pipeline, step.name, handler)
        self._invoker = Invoker(
            pipeline.name, step, handler, self._message_logger, observe, contracts=contracts
        )
        books = Bookkeeper(
            self.target, step.retry, self._message_logger, counters, step_log=self._log
        )
        self._books = books
        self.flow = FlowGate(pipeline, step, self.vt_seconds)
        self._batches = Batches(
            pool,
            self._invoker,
            books,
            vt_seconds=self.vt_seconds,
            batch_size=self.batch_size,
            log=self._log,
            on_extended=self._extended,
            on_sent=self._sent,
            may_read_ahead=self.flow.may_read_ahead,
        )
        self._doorbell = Doorbell()
        self._recheck_at: float | None = None
        self._due_at: float | None = None
        self._in_flight = 0
        self.on_empty: Callable[[], None] | None = None
        self.on_sent: Callable[[], None] | None = None
        """Called after a batch that sent messages to the next steps committed (the worker
        rings its own consumers of those steps: no notification needed, none throttled)."""

    def _init_logging(
        self, logger: logging.Logger | logging.LoggerAdapter[Any] | None, pipeline: str, step: str
    ) -> None:
        base = logger if logger is not None else logging.getLogger(__name__)
        if isinstance(base, logging.LoggerAdapter):
            self._logger_name = base.logger.name
            self._log_context: dict[str, Any] = dict(base.extra or {})
        else:
            self._logger_name = base.name
            self._log_context = {}
        self._log_context.setdefault("pipeline", pipeline)
        self._log_context.setdefault("step", step)
        self._log = step_logger(self._logger_name, **self._log_context)

    # -- the interface ---------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Messages read by this consumer and not finished yet."""
        return self._in_flight

    @property
    def abandoned(self) -> int:
        """Plain ``def`` handler calls that timed out and still run in their thread."""
        return self._invoker.threads.abandoned

    def wake(self) -> None:
        """Messages arrived: idle loops read now (call from the event loop's thread)."""
        self._doorbell.ring()
        if self._throttle is not None:
            self._recheck_at = time.monotonic() + self._throttle + RECHECK_MARGIN

    def ring(self) -> None:
        """This process handed messages on to this queue: idle loops read now, without the
        trailing re-check of a notification (call from the event loop's thread)."""
        self._doorbell.ring()

    def _sent(self) -> None:
        if self.on_sent is not None:
            self.on_sent()

    def visible_in(self, seconds: float | None) -> None:
        """The queue next holds a visible message in `seconds` (now if <= 0; None: it holds
        none): idle loops read then (call from the event loop's thread)."""
        if seconds is not None and seconds <= 0:
            self._due_at = None
            self._doorbell.ring()
            return
        self._due_at = None if seconds is None else time.monotonic() + seconds
        self._doorbell.nudge()

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume until `stopping` is set and the batches in flight are done."""
        loops = [
            asyncio.create_task(self._loop(stopping), name=f"{self.queue} #{i}")
            for i in range(self.concurrency)
        ]
        bell = asyncio.create_task(self._ring_when(stopping))
        try:
            await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            for task in loops:
                task.cancel()
            await asyncio.wait(loops)  # they roll back and release their messages
            raise
        finally:
            bell.cancel()
            self._books.lines.close_all()  # a storm's last held-back lines are counted
        # Loops end on their own only when `stopping` is set; one that raised (a missing
        # queue, a bug; never a database outage) stops the others and surfaces here.
        failed = [t for t in loops if t.done() and not t.cancelled() and t.exception() is not None]
        if failed:
            for task in loops:
                task.cancel()
            await asyncio.wait(loops)
            failed[0].result()

    # -- loops -------------------------------------------------------------------------------

    async def _loop(self, stopping: asyncio.Event) -> None:
        failures = 0

        def healthy() -> None:
            nonlocal failures
            failures = 0

        while not stopping.is_set():
            try:
                rings = await self._consume(stopping, healthy)
            except (QueueMissing, TooManyAbandoned):
                raise
            except Exception as exc:
                if is_missing_queue(exc):
                    raise self._missing() from exc
                failures += 1
                delay = reconnect_delay(failures)
                self._log_error(exc, delay, failures)
                await wait(stopping, delay)
                continue
            await self._idle(rings, stopping)

    async def _idle(self, rings: int, stopping: asyncio.Event) -> None:
        """Wait for a ring after `rings`, or until the idle timeout passes; a nudge (a new
        moment from `visible_in`) recomputes the timeout."""
        while not stopping.is_set() and self._doorbell.rings == rings:
            timeout = self._idle_timeout()
            if timeout <= 0:
                return
            nudges = self._doorbell.nudges
            await self._doorbell.wait(rings, timeout)
            if self._doorbell.nudges == nudges:
                return  # rung, or the timeout passed

    def _missing(self) -> QueueMissing:
        t = self.target
        return QueueMissing(
            f"queue {self.queue!r} of step {t.pipeline}.{t.step} does not exist; "
            "run orchestrator apply (orchestrator plan shows the drift)"
        )

    async def _consume(self, stopping: asyncio.Event, healthy: Callable[[], None]) -> int:
        """Read and hand off batches on one pool connection until the queue stays empty.

        While the queue is busy, each batch's `complete` call also reads the next batch and its
        COMMIT goes out with the next BEGIN and the next batch's claim: two round trips per
        batch (complete, COMMIT) instead of five. After an empty read the loop keeps its
        connection for up to LINGER seconds: a busy pipeline wakes it again within that time,
        and taking a connection back from the pool costs a reset round trip. Then it gives the
        connection back, so that loops sharing a pool smaller than their number all get their
        turn.
        Returns the wake-up count seen by the last read (for the idle wait that follows).
        """
        async with self._pool.acquire() as conn:
            session = Session(conn)
            conn.add_termination_listener(session.watch.closed)
            try:
                return await self._batches_on(session, stopping, healthy)
            finally:
                # A connection the pool already took back (it was closed) refuses this.
                with contextlib.suppress(asyncpg.InterfaceError):
                    conn.remove_termination_listener(session.watch.closed)

    async def _batches_on(
        self, session: Session, stopping: asyncio.Event, healthy: Callable[[], None]
    ) -> int:
        following: list[StepMessage] = []
        while True:
            rings = self._doorbell.rings
            admission: Admission | None = None
            if following:
                messages, following = following, []
            else:
                if stopping.is_set():
                    return rings
                self._check_abandoned()  # between batches: nothing held
                admission = await self.flow.admit(session.conn, self.batch_size, stopping)
                if admission is None:
                    return rings  # stopping while the flow gate held the step back
                messages = await self._read(session.conn, admission)
                healthy()
                if not messages:
                    if self.on_empty is not None:
                        self.on_empty()
                    timeout = self._idle_timeout()
                    nudges = self._doorbell.nudges
                    await self._doorbell.wait(rings, min(timeout, LINGER))
                    if self._doorbell.rings == rings and (
                        timeout > LINGER or self._doorbell.nudges != nudges
                    ):
                        return rings  # still nothing: wait without the connection
                    continue
                self._in_flight += len(messages)
            try:
                following = await self._dispatch(session, messages, stopping)
            finally:
                self._in_flight -= len(messages)
                await self.flow.release(session.conn, admission)
            self._in_flight += len(following)
            if following and self._too_many_abandoned():
                await self._give_back_unread(session, following)
                self._in_flight -= len(following)
                following = []

    async def _read(self, conn: Connection, admission: Admission) -> list[StepMessage]:
        """The step's read path: one batch of what the flow gate admitted, autocommit (the one
        place a step reads); the admission's unused tokens and slots go back at once."""
        now = time.monotonic()
        if self._recheck_at is not None and now >= self._recheck_at:
            self._recheck_at = None
        if self._due_at is not None and now >= self._due_at:
            self._due_at = None
        try:
            return await self.flow.read(conn, self.queue, self.vt_seconds, admission)
        except BaseException:
            await self.flow.release(conn, admission)
            raise

    async def _dispatch(
        self, session: Session, messages: list[StepMessage], stopping: asyncio.Event
    ) -> list[StepMessage]:
        """Hand off `messages`: together, except suspects. The first suspect runs alone after
        the others' batch; the rest are given back unread, for later reads to take one by one
        (each run alone exposes no other message to its crash)."""
        suspects = [m for m in messages if is_suspect(m)]
        if not suspects:
            async with self.solitude.shared():
                return await self._batches.run(session, messages, stopping=stopping)
        suspect, others = suspects[0], suspects[1:]
        await self._give_back_unread(session, others)
        healthy = [m for m in messages if not is_suspect(m)]
        if healthy:
            async with self.solitude.shared():
                await self._batches.run(session, healthy, stopping=None)
        await self._run_suspect(session, suspect)
        return []

    async def _run_suspect(self, session: Session, suspect: StepMessage) -> None:
        """Run `suspect` in a batch of one; alone in the process when the gate is free, or,
        past its attempts, once it is (see `solitude`): only then is it marked ``isolated``."""
        # Past its attempts and not yet proven: it waits to run alone (proven, its batch
        # dead-letters it before its handler runs: no need to wait).
        past_cap = suspect.read_ct > self._max_attempts and not proven_lost(suspect)
        lease = Lease(self._pool, self.queue, self.vt_seconds, [suspect]) if past_cap else None
        try:
            async with self.solitude.alone(wait=past_cap) as alone:
                if lease is not None:
                    await lease.stop()
                    lease = None
                if alone:
                    if not await handoff.isolate(session.conn, self.queue, suspect):
                        return  # its read lapsed: another worker has it now
                    self._log.info(
                        "message %d read again after a lost attempt (read %d): it runs alone",
                        suspect.msg_id,
                        suspect.read_ct,
                    )
                try:
                    await self._batches.run(session, [suspect], stopping=None)
                finally:
                    if alone:
                        await self._unisolate(suspect)
        finally:
            if lease is not None:
                await lease.stop()

    async def _unisolate(self, suspect: StepMessage) -> None:
        """This process outlived `suspect`'s run alone, however the run ended (an outcome, a
        lost connection, a batch given back): take its ``isolated`` mark back, so that a loss
        of this read, if it comes back unrecorded, is not taken for the message ending its
        process. Through the pool, as the run's connection may be gone; tried until the
        message's visibility timeout, when another read may take it."""
        deadline = time.monotonic() + self.vt_seconds
        delay = 0.05
        while True:
            try:
                async with self._pool.acquire(timeout=1.0) as conn:
                    await handoff.unisolate(conn, self.queue, suspect)
                return
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                if time.monotonic() + delay >= deadline:
                    self._log.warning(
                        "message %d: could not take back its isolated mark; if its read is "
                        "lost again it may be taken for a message that ends its worker",
                        suspect.msg_id,
                    )
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _too_many_abandoned(self) -> bool:
        return self.abandoned > ABANDONED_PER_LOOP * self.concurrency

    def _check_abandoned(self) -> None:
        """Stop (to be replaced) once too many timed-out ``def`` calls still run here."""
        if self._too_many_abandoned():
            raise TooManyAbandoned(
                f"step {self.target.pipeline}.{self.target.step}: {self.abandoned} handler "
                "calls past their timeout still run in this worker; stopping it so that it "
                "is replaced"
            )

    async def _give_back_unread(self, session: Session, messages: list[StepMessage]) -> None:
        """Messages read ahead and not started: back to the queue, their read undone."""
        await session.rollback()  # the read-ahead itself committed with the last batch
        await handoff.unread(session.conn, self.queue, messages)

    def _idle_timeout(self) -> float:
        """Seconds an idle loop waits for a wake-up: the poll interval, or less when the
        trailing re-check after a throttled notification or a message's visibility comes
        sooner."""
        timeout = self.poll_interval
        now = time.monotonic()
        for moment in (self._recheck_at, self._due_at):
            if moment is not None:
                timeout = min(timeout, max(0.0, moment - now))
        return timeout

    async def _ring_when(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        self._doorbell.ring()

    def _log_error(self, exc: Exception, delay: float, failures: int) -> None:
        if isinstance(exc, asyncpg.TooManyConnectionsError):
            # The pool gave a slot back whose login was refused for now, for this loop to
            # take an idle connection instead: said once a minute by the pool already.
            self._log.debug("no connection for now (%s); retrying in %.1fs", exc, delay)
        elif is_connection_error(exc):
            self._log.warning(
                "database unavailable (%s: %s); retrying in %.1fs",
                type(exc).__name__,
                exc,
                delay,
            )
        else:
            self._log.error(
                "consumer error (%d in a row); retrying in %.1fs",
                failures,
                delay,
                exc_info=exc,
            )

    def _message_logger(self, m: StepMessage) -> logging.LoggerAdapter[logging.Logger]:
        return step_logger(
            self._logger_name,
            **self._log_context,
            run_id=m.run_id,
            msg_id=m.msg_id,
            attempt=m.read_ct,
        )

    def _extended(self) -> None:
        if self._counters is not None:
            self._counters.lease_extensions.inc()
