"""What a handler gets besides its payload (`StepContext`), and what it may raise.

A handler is ``async def handler(payload: dict, ctx: StepContext) -> dict | None`` (or a plain
``def`` taking ``(payload)`` or ``(payload, ctx)``, run in a thread). It returns the payload of
the next step(s); ``None`` forwards its input. Raising

- `Retry` asks for another attempt at a chosen time (``after`` seconds, a timedelta or a
  datetime); the attempt still counts against the step's ``max_attempts``;
- `Fail` is a permanent failure: the message goes to the dead-letter queue at once;
- any other exception is retried per the step's retry policy, then dead-lettered.

``ctx.conn`` is the connection of the transaction that hands the message off: what the handler
writes through it commits together with the next steps' messages, or not at all. Do not
commit or roll back that transaction yourself (``async with ctx.conn.transaction():`` is fine:
it nests as a savepoint). Plain ``def`` handlers run in a thread and get ``ctx.conn = None``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from asyncpg.connection import _ConnectionProxy


class Retry(Exception):
    """Raise in a handler to try the message again later.

    `after`: seconds from now, a `timedelta`, or a `datetime` (naive ones are local time);
    None uses the step's backoff. The attempt counts against ``max_attempts``.
    """

    def __init__(self, after: float | timedelta | datetime | None = None, reason: str = "") -> None:
        if after is not None and not isinstance(after, int | float | timedelta | datetime):
            raise TypeError(
                f"Retry(after=...) takes seconds, a timedelta or a datetime, not {after!r}"
            )
        if isinstance(after, bool):
            raise TypeError("Retry(after=...) takes seconds, a timedelta or a datetime, not a bool")
        self.after = after
        self.reason = reason
        super().__init__(reason or _describe_after(after))

    def delay(self, now: float | None = None) -> float | None:
        """Seconds from `now` (epoch seconds; default: the current time) to the requested
        attempt, at least 0; None when the step's backoff decides."""
        after = self.after
        if after is None:
            return None
        if isinstance(after, datetime):
            return max(0.0, after.timestamp() - (time.time() if now is None else now))
        if isinstance(after, timedelta):
            return max(0.0, after.total_seconds())
        seconds = float(after)
        return seconds if seconds > 0 else 0.0


def _describe_after(after: float | timedelta | datetime | None) -> str:
    if after is None:
        return "retry requested"
    if isinstance(after, datetime):
        return f"retry requested at {after.isoformat()}"
    seconds = after.total_seconds() if isinstance(after, timedelta) else float(after)
    return f"retry requested in {seconds:g}s"


class Fail(Exception):
    """Raise in a handler for a permanent failure: the message is dead-lettered at once."""


class StepContext:
    """Everything about the message a handler is working on.

    `attempt` counts from 1 (the message's read count); `deadline` is when the step's timeout
    cancels the handler. `idempotency_key` is the same for every attempt of the step in this
    run: pass it to external systems so a retried side effect happens once.
    """

    __slots__ = (
        "_abandoned",
        "_conn",
        "_conn_used",
        "_deadline",
        "_logger",
        "_run_id",
        "attempt",
        "headers",
        "max_attempts",
        "message_id",
        "pipeline",
        "step",
    )

    def __init__(
        self,
        *,
        run_id: uuid.UUID | str,
        pipeline: str,
        step: str,
        attempt: int,
        max_attempts: int,
        message_id: int,
        headers: Mapping[str, Any],
        logger: logging.LoggerAdapter[logging.Logger]
        | Callable[[], logging.LoggerAdapter[logging.Logger]],
        deadline: datetime | float,
        conn: Any | None = None,
    ) -> None:
        # run_id, logger and deadline may come unbuilt (a string, a factory, epoch seconds):
        # most handlers never look at them, and a batch builds thousands of contexts.
        self._run_id = run_id
        self.pipeline = pipeline
        self.step = step
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.message_id = message_id
        self.headers = headers
        self._logger = logger
        self._deadline = deadline
        self._conn = conn
        self._conn_used = False
        self._abandoned = False

    @property
    def run_id(self) -> uuid.UUID:
        """The run this message belongs to (also the trace id of its traceparent)."""
        if not isinstance(self._run_id, uuid.UUID):
            self._run_id = uuid.UUID(self._run_id)
        return self._run_id

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry pipeline, step, run_id, msg_id and attempt."""
        if not isinstance(self._logger, logging.LoggerAdapter):
            self._logger = self._logger()
        return self._logger

    @property
    def deadline(self) -> datetime:
        """When the step's timeout cancels the handler (UTC)."""
        if not isinstance(self._deadline, datetime):
            self._deadline = datetime.fromtimestamp(self._deadline, UTC)
        return self._deadline

    @property
    def conn(self) -> Any | None:
        """The transaction's connection (an asyncpg connection); None for plain ``def``
        handlers. What the handler writes through it commits with the hand-off or not at all."""
        self._conn_used = True
        return self._conn

    @property
    def conn_used(self) -> bool:
        """True once the handler has asked for `conn`."""
        return self._conn_used

    @property
    def abandoned(self) -> bool:
        """True once the runtime gave up on this attempt (it ran past the step's timeout).

        An ``async def`` handler is cancelled instead; a plain ``def`` handler cannot be, and
        keeps running in its thread while the message is retried or dead-lettered. A long
        ``def`` handler should check it between its steps of work and return at once when it
        is true: its result is thrown away, and another attempt may already be running.
        """
        return self._abandoned

    def abandon(self) -> None:
        """Mark this attempt as given up on (the runtime calls it; see `abandoned`)."""
        self._abandoned = True

    @property
    def idempotency_key(self) -> str:
        """``"<run_id>:<step>"``: stable across retries of this step in this run."""
        return f"{self.run_id}:{self.step}"

    @property
    def time_left(self) -> float:
        """Seconds until the deadline (negative once it has passed)."""
        return (self.deadline - datetime.now(UTC)).total_seconds()

    @property
    def is_last_attempt(self) -> bool:
        """True when a failure of this attempt sends the message to the dead-letter queue."""
        return self.attempt >= self.max_attempts

    def __repr__(self) -> str:
        return (
            f"StepContext(pipeline={self.pipeline!r}, step={self.step!r}, run_id={self.run_id}, "
            f"message_id={self.message_id}, attempt={self.attempt}/{self.max_attempts})"
        )


# Connection methods that talk to the server: the first one a handler calls takes its savepoint.
_QUERY_METHODS = frozenset(
    name
    for name, value in vars(asyncpg.Connection).items()
    if inspect.iscoroutinefunction(value) and not name.startswith("_")
)


class SavepointConnection(_ConnectionProxy):  # type: ignore[misc]
    """``ctx.conn`` when a batch holds several messages: the batch transaction's connection,
    with a SAVEPOINT taken just before the handler's first statement.

    A failing handler's writes are undone alone (ROLLBACK TO the savepoint) while the other
    messages of the batch still hand off; a handler that never touches the database costs no
    round trip. It passes ``isinstance(conn, asyncpg.Connection)`` like a pool's connection.
    """

    __slots__ = ("_conn", "_pending", "_taken")

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._pending: asyncio.Future[Any] | None = None
        self._taken = False

    async def _savepoint(self) -> None:
        if self._taken:
            return
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._conn.execute("SAVEPOINT handler"))
        # Shielded: a handler cancelled mid-command must not leave us unsure whether the
        # savepoint exists; `settle` waits for the command to finish either way.
        await asyncio.shield(self._pending)
        self._taken = True

    @property
    def used(self) -> bool:
        """True once the handler has sent (or started sending) a statement."""
        return self._pending is not None

    async def settle(self) -> bool:
        """Wait for a savepoint command still in flight; True when the savepoint exists."""
        pending = self._pending
        if pending is None:
            return False
        if not pending.done():
            await asyncio.wait({pending})
        self._taken = not pending.cancelled() and pending.exception() is None
        return self._taken

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name not in _QUERY_METHODS:
            return attr

        async def first_savepoint(*args: Any, **kwargs: Any) -> Any:
            await self._savepoint()
            return await attr(*args, **kwargs)

        return first_savepoint

    def transaction(self, **kwargs: Any) -> _SavepointFirst:
        """A nested transaction (a savepoint of its own) inside the handler's savepoint."""
        return _SavepointFirst(self, self._conn.transaction(**kwargs))

    def cursor(self, *args: Any, **kwargs: Any) -> _CursorFirst:
        return _CursorFirst(self, self._conn.cursor(*args, **kwargs))

    def __repr__(self) -> str:
        return f"<SavepointConnection {self._conn!r}>"


class _SavepointFirst:
    """An asyncpg Transaction that takes the handler's savepoint before starting."""

    def __init__(self, owner: SavepointConnection, transaction: Any) -> None:
        self._owner = owner
        self._transaction = transaction

    async def start(self) -> None:
        await self._owner._savepoint()
        await self._transaction.start()

    async def __aenter__(self) -> Any:
        await self._owner._savepoint()
        return await self._transaction.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._transaction.__aexit__(*exc_info)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transaction, name)


class _CursorFirst:
    """An asyncpg CursorFactory that takes the handler's savepoint before its first fetch."""

    def __init__(self, owner: SavepointConnection, factory: Any) -> None:
        self._owner = owner
        self._factory = factory

    def __await__(self) -> Generator[Any, None, Any]:
        return self._open().__await__()

    async def _open(self) -> Any:
        await self._owner._savepoint()
        return await self._factory

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        await self._owner._savepoint()
        async for record in self._factory:
            yield record
