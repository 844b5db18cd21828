"""One batch, one transaction: claim, run the handlers, hand off, commit.

The life of a batch is an explicit state machine (`State`):

    OPEN --complete()+COMMIT sent--> COMMITTING --ok--> DONE
      |                                   '--refused--> ROLLED_BACK --failures recorded--> DONE
      '--one message failed, no savepoint--> ROLLED_BACK --failure recorded--> DONE

and every exception that ends a batch early goes through ONE classifier (`classify`): a lost
lease or a transient conflict gives the messages back at once (fenced by read_ct); a missing
queue or anything else rolls back and surfaces; a batch whose COMMIT was sent is never given
back (it may have committed; if not, its messages return at their vt).

The per-message decisions (hand off, retry, dead-letter, checks before a handler runs) are
`bookkeeping.Bookkeeper`'s; running one handler is `attempt.Invoker`'s. Every transaction
opened here is READ COMMITTED whatever the database's default (`pgconn.ISOLATION`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from orchestrator.errors import CommitFailed, QueueMissing, TransactionAborted
from orchestrator.observe import otel
from orchestrator.runtime import handoff
from orchestrator.runtime.attempt import Attempt, Invoker
from orchestrator.runtime.bookkeeping import Bookkeeper
from orchestrator.runtime.context import SavepointConnection
from orchestrator.runtime.handoff import Outcomes, StepMessage
from orchestrator.runtime.lease import Lease, LeaseLost, Watch
from orchestrator.runtime.pgconn import (
    ISOLATION,
    Connection,
    is_connection_error,
    is_missing_queue,
    settle,
)
from orchestrator.runtime.timers import Deadline

RELEASE_TIMEOUT = 5.0
"""Seconds a cancelled batch waits for the database to take its messages back."""

_GIVE_BACK = (
    LeaseLost,
    asyncpg.ObjectNotInPrerequisiteStateError,  # complete(): the fence found one not ours
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.LockNotAvailableError,  # the claim's lock_timeout
    asyncio.CancelledError,
)


class State(enum.Enum):
    OPEN = "open"
    ROLLED_BACK = "rolled back"
    COMMITTING = "committing"
    DONE = "done"


class Fault(enum.Enum):
    """How an exception that ends a batch early is handled (see `classify`)."""

    GIVE_BACK = "give back"
    """Roll back and make the messages visible at once: they run again."""
    MISSING_QUEUE = "missing queue"
    """Roll back and stop: the step's queue is gone."""
    FATAL = "fatal"
    """Roll back and surface (a database outage, a cancellation, a bug)."""


def classify(exc: BaseException) -> Fault:
    """The one place that says what an exception means for the batch it ended."""
    if isinstance(exc, _GIVE_BACK):
        return Fault.GIVE_BACK
    if is_missing_queue(exc):
        return Fault.MISSING_QUEUE
    return Fault.FATAL


class Session:
    """A loop's connection and the transaction it has open on it, if any.

    `commit(ahead)` with messages read ahead sends ``COMMIT; BEGIN; <their claim>`` in one
    round trip (`handoff.commit_and_claim`) and keeps the same asyncpg Transaction object for
    the next batch: asyncpg still sees one transaction (so a handler's
    ``ctx.conn.transaction()`` nests as a savepoint), the server sees one per batch. `claimed`
    then holds the msg_ids the new transaction already claimed, for the next batch's claim to
    skip its own round trip.
    """

    __slots__ = ("claimed", "conn", "tx", "watch")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.tx: Any = None
        self.watch = Watch()
        self.claimed: frozenset[int] = frozenset()

    async def begin(self) -> None:
        if self.tx is None:
            tx = self.conn.transaction(isolation=ISOLATION)
            await tx.start()
            self.tx = tx

    async def commit(self, ahead: Sequence[StepMessage] = ()) -> None:
        """COMMIT; with messages `ahead` (read by this transaction's `complete`), begin the
        next batch's transaction and claim them in the same round trip."""
        self.claimed = frozenset()
        if ahead:
            try:
                if await handoff.commit_and_claim(self.conn):
                    self.claimed = frozenset(m.msg_id for m in ahead)
            except BaseException:
                with contextlib.suppress(Exception):
                    await self.rollback()
                raise
            return
        tx, self.tx = self.tx, None
        await tx.commit()

    def take_claimed(self, messages: Sequence[StepMessage]) -> bool:
        """Whether the open transaction already claimed every one of `messages` (once)."""
        claimed, self.claimed = self.claimed, frozenset()
        return bool(claimed) and all(m.msg_id in claimed for m in messages)

    async def rollback(self) -> None:
        """End the transaction, whatever state asyncpg and the server think it is in."""
        self.claimed = frozenset()
        tx, self.tx = self.tx, None
        await settle(self.conn)
        if tx is not None:
            with contextlib.suppress(asyncpg.InterfaceError):  # already ended
                await tx.rollback()
        if self.conn.is_in_transaction():
            await self.conn.execute("ROLLBACK")


@dataclass(slots=True)
class _Run:
    """How a batch's handlers went, for the end of the transaction."""

    savepoints: bool
    whole_rollback: bool = False
    suspect: StepMessage | None = None
    """Without savepoints: the one message whose handler used ctx.conn and succeeded (it may
    have left the transaction aborted; `complete` tells)."""


class Batches:
    """Runs the batches of one step (see the module docstring)."""

    def __init__(
        self,
        pool: Any,
        invoker: Invoker,
        books: Bookkeeper,
        *,
        vt_seconds: int,
        batch_size: int,
        log: logging.LoggerAdapter[Any],
        on_extended: Callable[[], None] | None = None,
        on_sent: Callable[[], None] | None = None,
        may_read_ahead: Callable[[], bool] = lambda: True,
    ) -> None:
        self._pool = pool
        self.may_read_ahead = may_read_ahead
        """Whether the hand-off may read the next batch (a step under a limit may not: its
        next read must pass the flow gate)."""
        self._invoker = invoker
        self._books = books
        self.target = books.target
        self.queue = books.target.queue
        self.vt_seconds = vt_seconds
        self.batch_size = batch_size
        self._log = log
        self._on_extended = on_extended
        self._on_sent = on_sent

    async def run(
        self, session: Session, messages: list[StepMessage], *, stopping: asyncio.Event | None
    ) -> list[StepMessage]:
        """Claim, run and hand off `messages` in one transaction. Unless `stopping` is set
        (or None) once the handlers are done, the `complete` call also reads the next batch:
        it is returned, its transaction open."""
        batch = _Batch(self, session, messages)
        try:
            return await batch.run(stopping)
        except BaseException as exc:
            return await batch.ended_early(exc)


class _Batch:
    """One batch's transaction and its state."""

    def __init__(self, owner: Batches, session: Session, messages: list[StepMessage]) -> None:
        self.o = owner
        self.session = session
        self.conn = session.conn
        self.messages = messages
        self.owned: list[StepMessage] = []
        self.state = State.OPEN

    async def run(self, stopping: asyncio.Event | None) -> list[StepMessage]:
        await self.session.begin()
        await self._claim()
        if not self.owned:
            # Commit, not roll back: the claim deleted the messages of cancelled runs.
            await self.session.commit()
            self.state = State.DONE
            return []
        outcomes = Outcomes()
        run = await self._leased(outcomes)
        if not run.whole_rollback:
            read_next = stopping is not None and not stopping.is_set() and self.o.may_read_ahead()
            following = await self._complete(outcomes, run, read_next)
            if following is not None:
                return following
        # One message whose handler failed (or left its transaction aborted) with no
        # savepoint: undo everything, then record the failure on its own, still fenced.
        await self.session.rollback()
        self.state = State.ROLLED_BACK
        await self._record(outcomes)
        return []

    async def _claim(self) -> None:
        if self.session.take_claimed(self.messages):  # with the last COMMIT: all still ours
            self.owned = list(self.messages)
            return
        claimed = await handoff.claim(self.conn, self.o.queue, self.messages)
        self.owned = [m for m in self.messages if m.msg_id in claimed]
        if len(self.owned) < len(self.messages):
            self.o._log.info(
                "%d of %d message(s) read were taken by another worker before the claim",
                len(self.messages) - len(self.owned),
                len(self.messages),
            )

    async def _leased(self, outcomes: Outcomes) -> _Run:
        o = self.o
        lease = Lease(o._pool, o.queue, o.vt_seconds, self.owned, o._on_extended)
        self.session.watch.lease = lease
        try:
            run = await self._run_handlers(outcomes, lease)
        finally:
            self.session.watch.lease = None
            await lease.stop()
        lease.check()
        return run

    async def _complete(
        self, outcomes: Outcomes, run: _Run, read_next: bool
    ) -> list[StepMessage] | None:
        """complete() and COMMIT; None when the batch must be rolled back instead."""
        next_batch = (self.o.vt_seconds, self.o.batch_size) if read_next else None
        try:
            done, following = await handoff.complete(
                self.conn, self.o.target, outcomes, read_next=next_batch
            )
        except asyncpg.InFailedSQLTransactionError:
            # The one handler (no savepoint) caught a database error and returned.
            if run.suspect is None:
                raise
            self._aborted_transaction(outcomes, run.suspect)
            return None
        self.state = State.COMMITTING
        try:
            await self.session.commit(following)
        except asyncpg.PostgresError as exc:
            if is_connection_error(exc):
                raise
            # The server refused the COMMIT (a deferred constraint of a handler's writes):
            # nothing of the batch happened, the read-ahead included.
            self.state = State.ROLLED_BACK
            await self._commit_refused(exc)
            return []
        self.state = State.DONE
        self.o._books.count(done)
        if done.sent and self.o._on_sent is not None:
            self.o._on_sent()  # committed: this process's consumers of the next steps read now
        return following

    async def _record(self, outcomes: Outcomes) -> None:
        """One fenced complete() of failures only, outside the rolled-back transaction."""
        done, _ = await handoff.complete(self.conn, self.o.target, outcomes)
        self.state = State.DONE
        self.o._books.count(done)

    async def _commit_refused(self, exc: BaseException) -> None:
        """Record a failed attempt for every message of a batch whose COMMIT was refused."""
        failures = Outcomes()
        error = CommitFailed(f"the transaction could not commit: {type(exc).__name__}: {exc}")
        for m in self.owned:
            self.o._books.failed(failures, m, error)
        await self._record(failures)

    def _aborted_transaction(self, outcomes: Outcomes, m: StepMessage) -> None:
        """Turn `m`'s hand-off into a failure: its handler left the transaction aborted."""
        outcomes.undo_done(m)
        error = TransactionAborted(
            "the handler caught a database error and returned, leaving its transaction "
            "aborted; re-raise the error or use `async with ctx.conn.transaction():`"
        )
        self.o._books.failed(outcomes, m, error)

    # -- handlers ---------------------------------------------------------------------------

    async def _run_handlers(self, outcomes: Outcomes, lease: Lease) -> _Run:
        books = self.o._books
        runnable = [m for m in self.owned if books.precheck(outcomes, m)]
        uses_conn = self.o._invoker.is_async
        run = _Run(savepoints=uses_conn and len(runnable) > 1)
        task = asyncio.current_task()
        assert task is not None
        deadline = Deadline(task)
        try:
            for m in runnable:
                await self._run_handler(m, outcomes, lease, deadline, run)
        finally:
            deadline.close()
        return run

    async def _run_handler(
        self, m: StepMessage, outcomes: Outcomes, lease: Lease, deadline: Deadline, run: _Run
    ) -> None:
        books = self.o._books
        lease.check()
        handler_conn: Any = None
        if self.o._invoker.is_async:
            handler_conn = SavepointConnection(self.conn) if run.savepoints else self.conn
        attempt = await self.o._invoker.attempt(handler_conn, m, lease, deadline)
        try:
            lease.check()
        except BaseException:  # a lost lease: no decision, the span says `failed`
            otel.end_attempt(attempt.span, attempt.error)
            raise
        if attempt.ok:
            books.succeeded(outcomes, m, attempt.output or "")
        else:
            assert attempt.error is not None
            books.failed(outcomes, m, attempt.error, attempt.ctx.logger, attempt.span)
        await self._after_handler(handler_conn, attempt, outcomes, run)

    async def _after_handler(
        self, handler_conn: Any, attempt: Attempt, outcomes: Outcomes, run: _Run
    ) -> None:
        if isinstance(handler_conn, SavepointConnection):
            await self._end_savepoint(handler_conn, outcomes, attempt)
        elif handler_conn is not None:
            if attempt.ctx.conn_used:
                await settle(self.conn)  # a query the handler cancelled (its timeout, ours)
            if attempt.ok:
                run.suspect = attempt.message if attempt.ctx.conn_used else None
            else:
                run.whole_rollback = True

    async def _end_savepoint(
        self, handler_conn: SavepointConnection, outcomes: Outcomes, attempt: Attempt
    ) -> None:
        """Keep a handler's writes (release its savepoint) or undo them (roll back to it)."""
        if not handler_conn.used:
            return  # it never touched the database: nothing to keep or undo
        taken = await handler_conn.settle()
        await settle(self.conn)
        if not taken:
            return
        if attempt.ok:
            try:
                await self.conn.execute("RELEASE SAVEPOINT handler")
                return
            except asyncpg.InFailedSQLTransactionError:
                self._aborted_transaction(outcomes, attempt.message)
        await self.conn.execute("ROLLBACK TO SAVEPOINT handler; RELEASE SAVEPOINT handler")

    # -- ending early -----------------------------------------------------------------------

    async def ended_early(self, exc: BaseException) -> list[StepMessage]:
        """Roll back after `exc` and act on what `classify` says of it."""
        fault = classify(exc)
        cancelled = isinstance(exc, asyncio.CancelledError)
        owned = self.owned or (self.messages if cancelled else [])
        await self._abandon(owned, give_back=fault is Fault.GIVE_BACK)
        if cancelled:
            raise exc
        if fault is Fault.MISSING_QUEUE:
            raise QueueMissing(
                f"queue {self.o.queue!r} of step {self.o.target.pipeline}.{self.o.target.step}"
                " no longer exists; run orchestrator apply"
            ) from exc
        if fault is Fault.FATAL:
            raise exc
        what = "abandoned" if isinstance(exc, LeaseLost) else "rolled back; they run again"
        self.o._log.warning(
            "batch of %d message(s) %s (%s: %s)", len(owned), what, type(exc).__name__, exc
        )
        return []

    async def _abandon(self, owned: Sequence[StepMessage], *, give_back: bool) -> None:
        """Roll back an unfinished batch; with `give_back`, make its messages visible now.

        A batch whose COMMIT was sent is not given back: it may have committed, and if it did
        not, its messages come back at their vt.
        """
        try:
            await self.session.rollback()
        except Exception:
            return  # the connection is gone, and with it the transaction and its locks
        if not give_back or self.state not in (State.OPEN, State.ROLLED_BACK) or not owned:
            return
        try:
            await settle(self.conn)
            await asyncio.wait_for(
                handoff.release(self.conn, self.o.queue, owned), timeout=RELEASE_TIMEOUT
            )
        except Exception as exc:
            self.o._log.warning(
                "could not give back %d message(s) (%s); they come back after their "
                "visibility timeout",
                len(owned),
                exc,
            )
