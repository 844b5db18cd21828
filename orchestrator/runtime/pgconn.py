"""The connection the runtime's hot path talks to, typed, and the asyncpg internals it needs.

`Connection` is the part of an asyncpg connection the consumer, the batch and the hand-off use;
mypy checks every call on that path against it. asyncpg exposes no public way to wait for a
cancelled query to be acknowledged, so `settle` reads its protocol object: the one place the
runtime touches a private attribute of the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import asyncpg

ISOLATION = "read_committed"
"""The isolation level of every transaction the runtime opens. The fence (claim FOR KEY SHARE,
then a vt update from another session, then the DELETE of `complete`) relies on each statement
seeing the latest committed rows: under REPEATABLE READ or SERIALIZABLE the DELETE of a row whose
vt the lease extension moved fails with 40001, whatever the database's default says."""

SESSION_SETTINGS = {"default_transaction_isolation": "read committed"}
"""Server settings of the runtime's connections: implicit (autocommit) transactions too run
at READ COMMITTED whatever ``ALTER DATABASE ... SET default_transaction_isolation`` says."""


class Connection(Protocol):
    """What the runtime calls on a pool connection (an ``asyncpg.Connection``)."""

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str: ...

    async def fetch(
        self, query: str, *args: Any, timeout: float | None = None
    ) -> Sequence[Any]: ...

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...

    async def fetchval(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...

    def transaction(
        self, *, isolation: str | None = None, readonly: bool = False, deferrable: bool = False
    ) -> Any: ...

    def is_in_transaction(self) -> bool: ...

    def is_closed(self) -> bool: ...

    def add_termination_listener(self, callback: Callable[[Any], None]) -> None: ...

    def remove_termination_listener(self, callback: Callable[[Any], None]) -> None: ...


class PoolConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped here
    """A connection of a worker's pool: it remembers whether a handler was given it.

    The runtime's own statements leave no session state behind that matters (no LISTEN, no
    session-level SET or advisory lock, no open cursor: the wake-ups and upkeep locks live on
    dedicated connections; only the ``orchestrator.read_ahead_*`` settings a read-ahead leaves,
    which the next read-ahead rewrites before anything reads them), so taking a connection
    back costs no reset round trip (`reset_if_lent`) unless a handler had it and may have
    left any.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lent = False

    def lend(self) -> None:
        """A handler was given this connection: reset its session when it is taken back."""
        self.lent = True


async def reset_if_lent(conn: asyncpg.Connection) -> None:
    """The pool's reset (after asyncpg has rolled back an open transaction): asyncpg's full
    reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) for a connection a handler had."""
    if getattr(conn, "lent", True):
        query = conn.get_reset_query()  # empty behind a transaction pooler
        if query:
            await conn.execute(query)
        if isinstance(conn, PoolConnection):
            conn.lent = False


def lent_to_handler(conn: object) -> None:
    """Mark `conn` (a worker pool's connection, or its proxy) as given to a handler."""
    lend = getattr(conn, "lend", None)
    if lend is not None:
        lend()


async def settle(conn: object) -> None:
    """Wait until a query cancelled on `conn` (a handler's timeout) is acknowledged.

    asyncpg refuses new queries on a connection whose last query is being cancelled, and offers
    no public call to wait for it; its pool waits the same way (``_protocol``) before it takes a
    connection back. A proxy without a protocol (a savepoint wrapper) has nothing to wait for.
    """
    protocol = getattr(conn, "_protocol", None)
    if protocol is not None and protocol._is_cancelling():
        await protocol._wait_for_cancellation()


_TERMINATED_STATES = (
    "another operation (1) is in progress",
    "another operation (2) is in progress",
)
"""What asyncpg says when a call meets a connection whose server just ended it: the protocol
is left failed (1) or consuming the error (2) until the socket's close is seen, and a call in
between raises InternalClientError rather than a connection error."""


def is_connection_error(exc: BaseException) -> bool:
    """True when `exc` means the database or the connection went away (retry later)."""
    if isinstance(exc, asyncpg.InternalClientError):
        return any(state in str(exc) for state in _TERMINATED_STATES)
    return isinstance(
        exc,
        OSError
        | ConnectionError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.TooManyConnectionsError  # a pool slot given back: its login refused for now
        | asyncpg.InterfaceError
        | asyncpg.CannotConnectNowError
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError,
    )


def is_missing_queue(exc: BaseException) -> bool:
    """True when `exc` says a queue's table does not exist (dropped by hand)."""
    return isinstance(exc, asyncpg.UndefinedTableError) or (
        isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", None) == "42P01"
    )
