"""`StepConsumer`: runs one step's handler over its queue, in batches, inside one process.

Interface (the process layer builds on it)::

    consumer = StepConsumer(pool, pipeline, step, handler_info,
                            concurrency=None, poll_interval=1.0, metrics=None, logger=None)
    consumer.queue          # the step's queue name, e.g. "work_orders__barcode"
    consumer.wake()         # a NOTIFY for consumer.queue arrived: read now (event-loop thread)
    await consumer.run(stopping)   # until `stopping` is set and in-flight work is done
    consumer.in_flight      # messages read and not yet finished

`run` starts `concurrency` loops (the step's, or the override); each holds one pool connection
while its queue has work, and for LINGER seconds after it runs dry (the pool should have
`concurrency` connections per consumer plus a spare for lease extensions; a smaller pool is
shared in turns, more slowly).
A loop reads a batch of `batch_size` messages and hands it off in one transaction (see
`handoff` and docs/architecture.md, "The hand-off"):

1. read, autocommit: read_ct counts the attempt even if this process dies. The read's commit
   does not wait for its WAL flush (only a crash of the server itself could forget it, and
   the attempt with it); the hand-off's COMMIT flushes it;
2. BEGIN; claim the messages still owned (locked FOR KEY SHARE, fenced by read_ct; waiting
   out the moment a concurrent read holds one): no other reader can take them while the
   transaction is open, however long the handlers run;
3. run the handlers one after another: they share the transaction's connection (``ctx.conn``;
   asyncpg runs one query at a time per connection). With several messages, ``ctx.conn``
   takes a SAVEPOINT before a handler's first statement, so a failure undoes only that
   handler's writes and handlers that never touch the database cost nothing. Plain ``def``
   handlers run in a thread pool without ``ctx.conn``;
4. one ``orchestrator.complete`` call: hand-offs (next messages, join arrivals, archive),
   retries and dead letters; COMMIT.

A failed handler (an exception, its timeout, a payload or output that is not a JSON object)
gets a retry per the step's policy (`retry.decide`) or a dead letter, in the same
transaction; with one message and no savepoint, the transaction is rolled back and the
failure recorded by a fenced statement of its own.

While a batch runs past half its visibility timeout, its lease is extended from another pool
connection (the FOR KEY SHARE claim lets an UPDATE of vt through), so after a crash its
messages come back a visibility timeout after the last sign of life. If the extension fails,
or the batch's connection closes, the running handler is cancelled and the batch rolled back.

Idle loops wait for `wake()` or `poll_interval`; after a wake-up they also read once more a
notification throttle window later, so messages whose notification was throttled are not left
for the poll. Database errors (a restart, a killed backend) never end `run`: the loop logs,
backs off (capped exponential with jitter) and carries on; unfinished messages come back at
their vt. Deadlocks and serialization failures roll the batch back and give its messages
back at once. When `run` is cancelled it rolls back its open transactions, makes the messages
it held visible again at once (fenced by read_ct) and re-raises CancelledError; a batch whose
COMMIT was already sent is left to its vt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg

from orchestrator.errors import ContractError
from orchestrator.observe.logging import step_logger
from orchestrator.runtime import handoff
from orchestrator.runtime.context import SavepointConnection, StepContext
from orchestrator.runtime.contracts import StepContracts
from orchestrator.runtime.handoff import Completion, Message, Outcomes, PayloadError, StepTarget
from orchestrator.runtime.retry import decide, reconnect_delay
from orchestrator.spec.handlers import HandlerInfo
from orchestrator.spec.models import Pipeline, ResolvedStep

RECHECK_MARGIN = 0.02
"""Seconds added to the notification throttle before the trailing re-check read."""

LINGER = 0.3
"""Seconds an idle loop keeps its connection after an empty read, waiting for a wake-up."""

RELEASE_TIMEOUT = 5.0
"""Seconds a cancelled consumer waits for the database to take its messages back."""

_TRANSIENT = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.LockNotAvailableError,  # the claim's lock_timeout
)


class HandlerTimeout(TimeoutError):
    """The handler ran past its step's timeout and was cancelled."""


class InvalidPayload(Exception):
    """The message body is not a JSON object; no handler can take it."""


class InvalidOutput(Exception):
    """The handler returned something that cannot be the next steps' payload."""


class TransactionAborted(Exception):
    """The handler caught a database error and returned, leaving its transaction aborted."""


class CommitFailed(Exception):
    """The batch's COMMIT was refused (e.g. a deferred constraint of a handler's writes)."""


class _LeaseLost(Exception):
    """The batch's messages may belong to another worker now."""


class _Counters:
    """The runtime metrics bound to one step's labels."""

    def __init__(self, metrics: Any, pipeline: str, step: str) -> None:
        self.handoffs = metrics.handoffs.labels(pipeline, step)
        self.failures = metrics.failures.labels(pipeline, step)
        self.retries = metrics.retries.labels(pipeline, step)
        self.dead_letters = metrics.dead_letters.labels(pipeline, step)
        self.lease_extensions = metrics.lease_extensions.labels(pipeline, step)
        self.handler_seconds = metrics.handler_seconds.labels(pipeline, step)

    def count(self, done: Completion) -> None:
        if done.handed_off:
            self.handoffs.inc(done.handed_off)
        if done.retried:
            self.retries.inc(done.retried)
        if done.dead_lettered:
            self.dead_letters.inc(done.dead_lettered)
        if done.retried or done.dead_lettered:
            self.failures.inc(done.retried + done.dead_lettered)


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
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        self._pool = pool
        self._step = step
        self._handler = handler
        self.queue: str = step.queue
        self.target = StepTarget.of(pipeline, step)
        self._contracts = StepContracts.of(pipeline, step.name, handler)
        self.concurrency = concurrency or step.concurrency
        self.batch_size = step.batch_size
        self.poll_interval = poll_interval
        self.vt_seconds = max(1, math.ceil(step.visibility_timeout))
        notify = pipeline.queues.notify
        self._throttle = notify.throttle if notify.enabled and notify.throttle > 0 else None
        base = logger if logger is not None else logging.getLogger(__name__)
        if isinstance(base, logging.LoggerAdapter):
            self._logger_name = base.logger.name
            self._log_context: dict[str, Any] = dict(base.extra or {})
        else:
            self._logger_name = base.name
            self._log_context = {}
        self._log_context.setdefault("pipeline", pipeline.name)
        self._log_context.setdefault("step", step.name)
        self._log = step_logger(self._logger_name, **self._log_context)
        self._counters = _Counters(metrics, pipeline.name, step.name) if metrics else None
        self._doorbell = _Doorbell()
        self._recheck_at: float | None = None
        self._in_flight = 0
        self._executor: ThreadPoolExecutor | None = None

    # -- the interface ---------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Messages read by this consumer and not finished yet."""
        return self._in_flight

    def wake(self) -> None:
        """Messages arrived: idle loops read now (call from the event loop's thread)."""
        self._doorbell.ring()
        if self._throttle is not None:
            self._recheck_at = time.monotonic() + self._throttle + RECHECK_MARGIN

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
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
        # Loops end on their own only when `stopping` is set; one that raised (a bug, never a
        # database error) stops the others and surfaces here.
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
            except Exception as exc:
                failures += 1
                delay = reconnect_delay(failures)
                self._log_error(exc, delay, failures)
                await _wait(stopping, delay)
                continue
            if not stopping.is_set():
                await self._doorbell.wait(rings, self._idle_timeout())

    async def _consume(self, stopping: asyncio.Event, healthy: Callable[[], None]) -> int:
        """Read and hand off batches on one pool connection until the queue stays empty.

        While the queue is busy, each batch's `complete` call also reads the next batch and its
        COMMIT goes out with the next BEGIN: three round trips per batch (claim, complete,
        COMMIT) instead of five. After an empty read the loop keeps its connection for up to
        LINGER seconds: a busy pipeline wakes it again within that time, and taking a
        connection back from the pool costs a reset round trip. Then it gives the connection
        back, so that loops sharing a pool smaller than their number all get their turn.
        Returns the wake-up count seen by the last read (for the idle wait that follows).
        """
        async with self._pool.acquire() as conn:
            session = _Session(conn)
            conn.add_termination_listener(session.watch.closed)
            try:
                following: list[Message] = []
                while True:
                    rings = self._doorbell.rings
                    if following:
                        messages, following = following, []
                    else:
                        if stopping.is_set():
                            return rings
                        if self._recheck_at is not None and time.monotonic() >= self._recheck_at:
                            self._recheck_at = None
                        messages = await handoff.read(
                            conn, self.queue, self.vt_seconds, self.batch_size
                        )
                        healthy()
                        if not messages:
                            timeout = self._idle_timeout()
                            await self._doorbell.wait(rings, min(timeout, LINGER))
                            if timeout > LINGER and self._doorbell.rings == rings:
                                return rings  # still nothing: wait without the connection
                            continue
                        self._in_flight += len(messages)
                    try:
                        following = await self._batch(session, messages, stopping=stopping)
                    finally:
                        self._in_flight -= len(messages)
                    self._in_flight += len(following)
            finally:
                # A connection the pool already took back (it was closed) refuses this.
                with contextlib.suppress(asyncpg.InterfaceError):
                    conn.remove_termination_listener(session.watch.closed)

    def _idle_timeout(self) -> float:
        """Seconds an idle loop waits for a wake-up: the poll interval, or less when the
        trailing re-check after a throttled notification comes sooner."""
        timeout = self.poll_interval
        if self._recheck_at is not None:
            timeout = min(timeout, max(0.0, self._recheck_at - time.monotonic()))
        return timeout

    async def _ring_when(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        self._doorbell.ring()

    def _log_error(self, exc: Exception, delay: float, failures: int) -> None:
        if _is_connection_error(exc):
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

    # -- one batch ---------------------------------------------------------------------------

    async def _batch(
        self, session: _Session, messages: list[Message], *, stopping: asyncio.Event | None
    ) -> list[Message]:
        """Claim, run and hand off one batch in one transaction. Unless `stopping` is set (or
        None) by then, `complete` reads the next batch too: it is returned, its transaction
        already open."""
        conn = session.conn
        state = "open"  # open -> rolled back | committing -> done
        owned: list[Message] = []
        try:
            await session.begin()
            claimed = await handoff.claim(conn, self.queue, messages)
            owned = [m for m in messages if m.msg_id in claimed]
            if len(owned) < len(messages):
                self._log.info(
                    "%d of %d message(s) read were taken by another worker before the claim",
                    len(messages) - len(owned),
                    len(messages),
                )
            if not owned:
                await session.rollback()
                state = "done"
                return []
            outcomes = Outcomes()
            lease = _Lease(self, owned)
            session.watch.lease = lease
            try:
                run = await self._run_handlers(conn, owned, outcomes, lease)
            finally:
                session.watch.lease = None
                await lease.stop()
            if lease.lost is not None:
                raise _LeaseLost(lease.lost)
            if not run.whole_rollback:
                read_next = stopping is not None and not stopping.is_set()
                next_batch = (self.vt_seconds, self.batch_size) if read_next else None
                try:
                    done, following = await handoff.complete(
                        conn, self.target, outcomes, read_next=next_batch
                    )
                except asyncpg.InFailedSQLTransactionError:
                    # The one handler (no savepoint) caught a database error and returned.
                    if run.suspect is None:
                        raise
                    self._aborted_transaction(outcomes, run.suspect)
                else:
                    state = "committing"
                    try:
                        await session.commit(begin_next=bool(following))
                    except asyncpg.PostgresError as exc:
                        if _is_connection_error(exc):
                            raise
                        # The server refused the COMMIT (a deferred constraint of a handler's
                        # writes): nothing of the batch happened, the read-ahead included.
                        state = "rolled back"
                        await self._commit_refused(session, owned, exc)
                        state = "done"
                        return []
                    state = "done"
                    self._done(done)
                    return following
            # One message whose handler failed (or left its transaction aborted) with no
            # savepoint: undo everything, then record the failure on its own, still fenced.
            await session.rollback()
            state = "rolled back"
            done, _ = await handoff.complete(conn, self.target, outcomes)
            state = "done"
            self._done(done)
            return []
        except asyncio.CancelledError:
            await self._abandon(session, state, owned or messages, give_back=True)
            raise
        except (_LeaseLost, asyncpg.ObjectNotInPrerequisiteStateError) as exc:
            # complete() raises 55000 when the fence finds a message owned by another worker.
            # The release is fenced too: it gives back only the messages still ours.
            await self._abandon(session, state, owned, give_back=True)
            self._log.warning("batch of %d message(s) abandoned: %s", len(owned), exc)
        except _TRANSIENT as exc:
            await self._abandon(session, state, owned, give_back=True)
            self._log.warning(
                "batch of %d message(s) rolled back (%s: %s); they run again",
                len(owned),
                type(exc).__name__,
                exc,
            )
        except BaseException:
            await self._abandon(session, state, owned, give_back=False)
            raise
        return []

    async def _commit_refused(
        self, session: _Session, owned: list[Message], exc: BaseException
    ) -> None:
        """Record a failed attempt for every message of a batch whose COMMIT was refused."""
        failures = Outcomes()
        error = CommitFailed(f"the transaction could not commit: {type(exc).__name__}: {exc}")
        for m in owned:
            self._failed(failures, m, error)
        done, _ = await handoff.complete(session.conn, self.target, failures)
        self._done(done)

    async def _abandon(
        self, session: _Session, state: str, owned: Sequence[Message], *, give_back: bool
    ) -> None:
        """Roll back an unfinished batch; with `give_back`, make its messages visible now.

        A batch whose COMMIT was sent is not given back: it may have committed, and if it did
        not, its messages come back at their vt.
        """
        try:
            await session.rollback()
        except Exception:
            return  # the connection is gone, and with it the transaction and its locks
        if not give_back or state not in ("open", "rolled back") or not owned:
            return
        try:
            await _settle(session.conn)
            await asyncio.wait_for(
                handoff.release(session.conn, self.queue, owned), timeout=RELEASE_TIMEOUT
            )
        except Exception as exc:
            self._log.warning(
                "could not give back %d message(s) (%s); they come back after their "
                "visibility timeout",
                len(owned),
                exc,
            )

    # -- handlers ----------------------------------------------------------------------------

    async def _run_handlers(
        self, conn: Any, owned: list[Message], outcomes: Outcomes, lease: _Lease
    ) -> _Run:
        runnable = []
        for m in owned:
            if isinstance(m.body, dict):
                runnable.append(m)
            else:
                error = InvalidPayload(
                    f"the message body is {handoff._kind(m.body)}, not a JSON object"
                )
                self._failed(outcomes, m, error, permanent=True)
        uses_conn = self._handler.is_async
        run = _Run(savepoints=uses_conn and len(runnable) > 1)
        for m in runnable:
            if lease.lost is not None:
                raise _LeaseLost(lease.lost)
            handler_conn: Any = None
            if uses_conn:
                handler_conn = SavepointConnection(conn) if run.savepoints else conn
            ctx, ok = await self._call(handler_conn, m, outcomes, lease)
            if lease.lost is not None:
                raise _LeaseLost(lease.lost)
            if isinstance(handler_conn, SavepointConnection):
                await self._end_savepoint(conn, handler_conn, outcomes, m, ok)
            elif uses_conn:
                if ctx.conn_used:
                    await _settle(conn)  # a query the handler cancelled (its own timeout, ours)
                if ok:
                    run.suspect = m if ctx.conn_used else None
                else:
                    run.whole_rollback = True
        return run

    async def _end_savepoint(
        self, conn: Any, handler_conn: SavepointConnection, outcomes: Outcomes, m: Message, ok: bool
    ) -> None:
        """Keep a handler's writes (release its savepoint) or undo them (roll back to it)."""
        if not handler_conn.used:
            return  # it never touched the database: nothing to keep or undo
        taken = await handler_conn.settle()
        await _settle(conn)
        if not taken:
            return
        if ok:
            try:
                await conn.execute("RELEASE SAVEPOINT handler")
                return
            except asyncpg.InFailedSQLTransactionError:
                self._aborted_transaction(outcomes, m)
        await conn.execute("ROLLBACK TO SAVEPOINT handler; RELEASE SAVEPOINT handler")

    def _aborted_transaction(self, outcomes: Outcomes, m: Message) -> None:
        """Turn `m`'s hand-off into a failure: its handler left the transaction aborted."""
        index = len(outcomes.done_ids) - 1 - outcomes.done_ids[::-1].index(m.msg_id)
        for column in (
            outcomes.done_ids,
            outcomes.done_read_cts,
            outcomes.done_run_ids,
            outcomes.done_outputs,
        ):
            del column[index]
        error = TransactionAborted(
            "the handler caught a database error and returned, leaving its transaction "
            "aborted; re-raise the error or use `async with ctx.conn.transaction():`"
        )
        self._failed(outcomes, m, error)

    async def _call(
        self, conn: Any, m: Message, outcomes: Outcomes, lease: _Lease
    ) -> tuple[StepContext, bool]:
        """Run the handler on `m`; record its output or its failure in `outcomes`."""
        step = self._step
        ctx = StepContext(
            run_id=m.run_id,
            pipeline=self.target.pipeline,
            step=step.name,
            attempt=m.read_ct,
            max_attempts=step.retry.max_attempts,
            message_id=m.msg_id,
            headers=m.headers,
            logger=functools.partial(self._message_logger, m),
            deadline=time.time() + step.timeout,
            conn=conn,
        )
        started = time.perf_counter()
        error: BaseException | None = None
        result: Any = None
        task = asyncio.current_task()
        assert task is not None
        deadline = _Deadline(task, step.timeout)
        lease.deadline = deadline
        try:
            payload = self._contracts.payload(m.body, m.headers)
            if self._handler.is_async:
                result = await self._handler.function(payload, ctx)
            else:
                result = await self._in_thread(payload, ctx)
        except asyncio.CancelledError as exc:
            if not deadline.expired:
                if task.cancelling():
                    raise  # we are being cancelled
                error = exc  # the handler's own cancellation, not ours: a failed attempt
        except Exception as exc:
            error = exc
        finally:
            deadline.cancel()
            lease.deadline = None
            if self._counters is not None:
                self._counters.handler_seconds.observe(time.perf_counter() - started)
        if deadline.expired:
            # Our timer cancelled the task (the timeout, or a lost lease): take that request
            # back; another one still pending means we are being cancelled as well.
            if task.uncancel() > 0:
                raise asyncio.CancelledError
            error = HandlerTimeout(f"the handler ran past the step's timeout of {step.timeout:g}s")
        if lease.lost is not None:
            return ctx, False
        if error is None:
            try:
                output = self._contracts.output(m.body if result is None else result)
                outcomes.done(m, handoff.encode_object(output, "handler output"))
                return ctx, True
            except PayloadError as exc:
                self._failed(outcomes, m, InvalidOutput(str(exc)), permanent=True, ctx=ctx)
                return ctx, False
            except ContractError as exc:
                self._failed(outcomes, m, exc, ctx=ctx)
                return ctx, False
        self._failed(outcomes, m, error, ctx=ctx)
        return ctx, False

    async def _in_thread(self, payload: Any, ctx: StepContext) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=max(4, 2 * self.concurrency),
                thread_name_prefix=f"orchestrator-{self.queue}",
            )
        function = self._handler.function
        call = (
            functools.partial(function, payload, ctx)
            if self._handler.takes_context
            else functools.partial(function, payload)
        )
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _failed(
        self,
        outcomes: Outcomes,
        m: Message,
        error: BaseException,
        *,
        permanent: bool = False,
        ctx: StepContext | None = None,
    ) -> None:
        """Record a failed attempt: a retry per the policy, or a dead letter."""
        decision = decide(self._step.retry, m.read_ct, error, permanent=permanent)
        headers = handoff.with_error(m.headers, handoff.error_record(m.read_ct, error))
        log = ctx.logger if ctx is not None else self._message_logger(m)
        described = f"{type(error).__name__}: {error}"
        if decision.dead:
            outcomes.dead(
                m,
                handoff.dead_letter_body(
                    self.target, m, error, permanent=decision.permanent, headers=headers
                ),
            )
            why = "permanent failure" if decision.permanent else f"attempt {m.read_ct} failed"
            log.error(
                "%s (%s); moving the message to %s",
                why,
                described,
                self.target.dead_letter_queue,
                exc_info=error if not isinstance(error, InvalidPayload) else None,
            )
        else:
            outcomes.retry(m, decision.delay, headers)
            log.warning(
                "attempt %d of %d failed (%s); retrying in %.3gs",
                m.read_ct,
                self._step.retry.max_attempts,
                described,
                decision.delay,
                exc_info=error,
            )

    def _message_logger(self, m: Message) -> logging.LoggerAdapter[logging.Logger]:
        return step_logger(
            self._logger_name,
            **self._log_context,
            run_id=m.run_id,
            msg_id=m.msg_id,
            attempt=m.read_ct,
        )

    def _done(self, done: Completion) -> None:
        if self._counters is not None:
            self._counters.count(done)

    def _extended(self) -> None:
        if self._counters is not None:
            self._counters.lease_extensions.inc()


class _Run:
    """How a batch's handlers went, for the end of the transaction."""

    __slots__ = ("savepoints", "suspect", "whole_rollback")

    def __init__(self, *, savepoints: bool) -> None:
        self.savepoints = savepoints
        self.whole_rollback = False
        self.suspect: Message | None = None
        """Without savepoints: the one message whose handler used ctx.conn and succeeded (it
        may have left the transaction aborted; `complete` tells)."""


class _Session:
    """A loop's connection and the transaction it has open on it, if any.

    `commit(begin_next=True)` sends ``COMMIT; BEGIN`` in one round trip and keeps the same
    asyncpg Transaction object for the next batch: asyncpg still sees one transaction (so a
    handler's ``ctx.conn.transaction()`` nests as a savepoint), the server sees one per batch.
    """

    __slots__ = ("conn", "tx", "watch")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.tx: Any = None
        self.watch = _Watch()

    async def begin(self) -> None:
        if self.tx is None:
            tx = self.conn.transaction()
            await tx.start()
            self.tx = tx

    async def commit(self, *, begin_next: bool) -> None:
        if begin_next:
            try:
                await self.conn.execute("COMMIT; BEGIN")
            except BaseException:
                with contextlib.suppress(Exception):
                    await self.rollback()
                raise
            return
        tx, self.tx = self.tx, None
        await tx.commit()

    async def rollback(self) -> None:
        """End the transaction, whatever state asyncpg and the server think it is in."""
        tx, self.tx = self.tx, None
        await _settle(self.conn)
        if tx is not None:
            with contextlib.suppress(asyncpg.InterfaceError):  # already ended
                await tx.rollback()
        if self.conn.is_in_transaction():
            await self.conn.execute("ROLLBACK")


class _Watch:
    """Connects a pool connection's termination to the lease of the batch running on it."""

    __slots__ = ("lease",)

    def __init__(self) -> None:
        self.lease: _Lease | None = None

    def closed(self, _conn: object) -> None:
        if self.lease is not None:
            self.lease.lose("the database connection of the batch was closed")


class _Lease:
    """Keeps a batch's messages leased while its handlers run.

    Every half visibility timeout it moves their vt forward from another pool connection
    (the claim's FOR KEY SHARE lock lets it). When that fails, or the batch's connection
    closes, `lost` says why and the running handler is cancelled.
    """

    def __init__(self, consumer: StepConsumer, messages: list[Message]) -> None:
        self._consumer = consumer
        self._messages = messages
        self._loop = asyncio.get_running_loop()
        self._period = consumer.vt_seconds / 2
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(self._period, self._due)
        self.lost: str | None = None
        self.deadline: _Deadline | None = None

    def _due(self) -> None:
        self._handle = None
        if not self._stopped:
            self._task = asyncio.create_task(self._extend())

    async def _extend(self) -> None:
        consumer = self._consumer
        try:
            async with consumer._pool.acquire(timeout=self._period) as conn:
                moved = await handoff.extend_lease(
                    conn, consumer.queue, self._messages, consumer.vt_seconds
                )
        except Exception as exc:
            self.lose(f"could not extend the lease ({type(exc).__name__}: {exc})")
            return
        if moved < len(self._messages):
            self.lose(
                f"lease lost: {len(self._messages) - moved} of {len(self._messages)} "
                "message(s) were taken by another worker"
            )
            return
        consumer._extended()
        if not self._stopped:
            self._handle = self._loop.call_later(self._period, self._due)

    def lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
        if self.deadline is not None:
            self.deadline.expire_now()

    async def stop(self) -> None:
        """No more extensions; waits for one in progress (it must not outlive the batch)."""
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        task = self._task
        if task is not None and not task.done():
            done, _ = await asyncio.wait({task}, timeout=self._period)
            if not done:
                task.cancel()
                await asyncio.wait({task})


class _Doorbell:
    """Wakes idle loops: `ring` resolves every waiter; a ring since `seen` is never missed."""

    __slots__ = ("_waiters", "rings")

    def __init__(self) -> None:
        self.rings = 0
        self._waiters: list[asyncio.Future[None]] = []

    def ring(self) -> None:
        self.rings += 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, seen: int, timeout: float) -> None:
        """Return at the first ring after `seen` rings (at once if there was one), or after
        `timeout` seconds."""
        if self.rings != seen:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if waiter in self._waiters:  # woken by its timer: not rung, still listed
                self._waiters.remove(waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Deadline:
    """Cancels a task running a handler when its timeout passes, or at once when told.

    What `asyncio.timeout` does, for a third of its cost: a batch of 100 makes 100 of them.
    The caller cancels it as soon as the handler returns, before its next await, and checks
    `expired` to tell its own cancellation from someone else's.
    """

    __slots__ = ("_handle", "_task", "expired")

    def __init__(self, task: asyncio.Task[Any], seconds: float) -> None:
        self._task = task
        self.expired = False
        self._handle: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            seconds, self._expire
        )

    def _expire(self) -> None:
        self._handle = None
        if not self.expired:
            self.expired = True
            self._task.cancel()

    def expire_now(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._expire()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


async def _settle(conn: Any) -> None:
    """Wait until a query cancelled on `conn` (a handler's timeout) is acknowledged.

    asyncpg refuses new queries on a connection whose last query is being cancelled; the
    pool waits the same way before it takes a connection back.
    """
    protocol = getattr(conn, "_protocol", None)
    if protocol is not None and protocol._is_cancelling():
        await protocol._wait_for_cancellation()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `event` is set meanwhile."""
    if event.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(
        exc,
        OSError
        | ConnectionError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.CannotConnectNowError
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError,
    )
