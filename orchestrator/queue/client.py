"""`Queue`: the async client of the queue layer, a thin typed layer over its SQL.

Hot operations (send, send_batch, read, pop, delete, archive, set_vt) run the queue layer's own
statements as prepared statements: the client fetches them once per queue from
`pgmq_ext.statements()` (the builders the `pgmq.*` functions use, so the SQL is the same) and
asyncpg prepares each once per connection, so PostgreSQL plans them once instead of on every
call. The client makes the argument checks those functions make first, with their messages.
Other calls, and every call on a database whose queue layer has no `pgmq_ext.statements()`
(an older install, or the real pgmq extension), go through the `pgmq.*` functions
(`sql/queries.sql`), one prepared statement each.

Every method takes an optional `conn=` so a caller can send, read or acknowledge inside a
transaction of its own: the queue operation then commits or rolls back with the caller's other
writes.

Queue names are checked here, with the rule the SQL layer applies (1-47 ASCII letters,
digits, underscores and hyphens, no `--`), so a bad name fails before any round trip. Errors
the database reports are translated at this boundary: an unknown queue raises `QueueNotFound`,
a refused argument `QueueError`, a database without the queue layer `SchemaMissing`; anything
else (a lost connection, a serialization failure) propagates unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from operator import itemgetter
from types import TracebackType
from typing import Any, NoReturn, TypeAlias, overload

import asyncpg
import orjson

from orchestrator.db.named_sql import named_queries
from orchestrator.errors import NotFound, QueueError, SchemaMissing
from orchestrator.queue.models import (
    JSON,
    Message,
    NotifyThrottle,
    QueueInfo,
    QueueMetrics,
    TopicBinding,
)

MAX_QUEUE_NAME_LENGTH = 47
_NO_TIME = timedelta(0)

# A delay or visibility time: seconds from now (int, float or timedelta) or a moment
# (timezone-aware datetime).
Delay: TypeAlias = int | float | timedelta | datetime
# A connection or pool to run a query on (asyncpg.Connection, PoolConnectionProxy or Pool).
Executor: TypeAlias = Any


class InvalidQueueName(QueueError):
    """A queue name the queue layer would refuse (found before any round trip)."""


class QueueNotFound(QueueError, NotFound):
    """The queue does not exist (`pgmq` raised undefined_table)."""


_Q = named_queries("orchestrator.queue")
_SEND = _Q["send"]
_SEND_HEADERS = _Q["send_headers"]
_READ = _Q["read"]
_DELETE = _Q["delete"]
_DELETE_MANY = _Q["delete_many"]

# Statements of at most this many queues are kept per client (a client touching more queues
# than that starts over, fetching them again).
MAX_CACHED_QUEUES = 1000

# A queue's statements by name (see pgmq_ext.statements()).
Statements: TypeAlias = dict[str, str]

# The statements that take several messages return them in scan order; the API returns them
# oldest first (sorting here costs far less than a sort in the statement).
_MSG_ID = itemgetter(0)

# --- arguments ---------------------------------------------------------------------------

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,47}")
# What PGMQ itself refuses in a queue name, refused with its text.
_PGMQ_REFUSED = ("$", ";", "--", "'")


def validate_queue_name(queue: object) -> str:
    """Return `queue` if the queue layer accepts it as a name, else raise InvalidQueueName."""
    if type(queue) is str and _QUEUE_NAME.fullmatch(queue) is not None and "--" not in queue:
        return queue
    raise InvalidQueueName(_name_problem(queue))


def _name_problem(queue: object) -> str:
    if not isinstance(queue, str):
        return f"queue name must be a string, got {type(queue).__name__}"
    if not queue:
        return "queue name must not be empty"
    if len(queue) > MAX_QUEUE_NAME_LENGTH:
        return (
            f"queue name is too long, maximum length is {MAX_QUEUE_NAME_LENGTH} characters: "
            f"{queue[:60]!r} has {len(queue)}"
        )
    if any(bad in queue for bad in _PGMQ_REFUSED):
        return f"queue name contains invalid characters: $, ;, --, or \\' (got {queue[:60]!r})"
    return f"invalid queue name {queue!r}: use only letters a-z, digits, underscores and hyphens"


def _seconds(value: int | float | timedelta, what: str) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise QueueError(f"{what} must be seconds, a timedelta or a datetime, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise QueueError(f"{what} must be a number of seconds >= 0, got {value!r}")
    return seconds


def _moment(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise QueueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value


def _whole(value: object) -> int | None:
    """`value` as the integer asyncpg would send for an integer parameter, None when it is
    no number (asyncpg then refuses it itself)."""
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def _check_read(vt: object, qty: object) -> None:
    """The checks of pgmq.read (and pop, with vt 0), with its messages."""
    seconds = _whole(vt)
    if vt is None or (seconds is not None and seconds < 0):
        shown = "NULL" if vt is None else seconds
        raise QueueError(f"vt must be a number of seconds >= 0, got {shown}")
    count = _whole(qty)
    if qty is None or (count is not None and count <= 0):
        shown = "NULL" if qty is None else count
        raise QueueError(f"qty must be a positive number of messages, got {shown}")


def _json_texts(values: Sequence[JSON], what: str) -> list[str | None]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise QueueError(f"{what} must be a list, got {type(values).__name__}")
    dumps = orjson.dumps
    try:
        return [None if v is None else dumps(v).decode() for v in values]
    except TypeError as exc:
        raise QueueError(f"{what}: a value is not JSON-serializable: {exc}") from None


def _batch_args(
    messages: Sequence[JSON], headers: Sequence[JSON] | None
) -> tuple[list[str | None], list[str | None] | None]:
    texts = _json_texts(messages, "messages")
    if not texts:
        raise QueueError("msgs cannot be NULL or empty: send_batch needs at least one message")
    if headers is None:
        return texts, None
    header_texts = _json_texts(headers, "headers")
    if len(header_texts) != len(texts):
        raise QueueError(
            f"headers array length ({len(header_texts)}) must match msgs array length "
            f"({len(texts)}): pass one header per message"
        )
    return texts, header_texts


# --- errors ------------------------------------------------------------------------------

_SCHEMA_MISSING = {"3F000", "42883"}  # invalid_schema_name, undefined_function
_REFUSED = {"42P07"}  # duplicate_table: a queue's table name taken by another object


def _translated(exc: asyncpg.PostgresError) -> Exception | None:
    """The orchestrator error for a database error of a queue call, None to re-raise it."""
    code: str = exc.sqlstate or ""
    message = str(exc.args[0]) if exc.args else str(exc)  # the message, not asyncpg's HINT lines
    if code == "42P01":
        return QueueNotFound(message)
    if code.startswith("22") or code in _REFUSED:
        return QueueError(message)
    if code in _SCHEMA_MISSING:
        return SchemaMissing(
            f"{message}: the queue layer is not installed in this database; "
            "run `orchestrator install`"
        )
    return None


def _own_function_gone(exc: asyncpg.PostgresError, queue: str) -> bool:
    """Whether `exc` says a function of `queue` itself (``pgmq_ext."read:<queue>"``, which the
    statements of a queue partitioned by msg_id call) does not exist: the queue was dropped."""
    own = re.compile(r'pgmq_ext\."?[a-z_]+:' + re.escape(queue.lower()) + r'"?\(')
    return own.search(str(exc)) is not None


def _raise_direct(exc: asyncpg.PostgresError, queue: str) -> NoReturn:
    """Raise the error for a failed statement of `queue`: a missing table means the queue is
    gone (said as the functions say it); others as the functions' errors are translated."""
    if exc.sqlstate == "42P01" or (exc.sqlstate == "42883" and _own_function_gone(exc, queue)):
        raise QueueNotFound(f'queue "{queue}" does not exist') from exc
    error = _translated(exc)
    if error is None:
        raise exc
    raise error from exc


# --- the client --------------------------------------------------------------------------


class Queue:
    """Async client of the queue layer over an asyncpg pool (or a single connection).

    `Queue(pool)` uses a pool you own; `await Queue.connect(dsn)` (or
    `async with Queue.connect(dsn) as q`) makes one with orchestrator's codecs and closes it
    with the client. `statements=False` sends every call through the `pgmq.*` functions, as
    a SQL caller would (the benchmark compares both paths).
    """

    __slots__ = ("_executor", "_has_statements", "_owns_executor", "_statements")

    def __init__(
        self, executor: Executor, *, owns_executor: bool = False, statements: bool = True
    ) -> None:
        self._executor = executor
        self._owns_executor = owns_executor
        # Queue name as given -> its statements; filled on first use of each queue.
        self._statements: dict[str, Statements] = {}
        # Whether the database has pgmq_ext.statements(); None until first asked.
        self._has_statements: bool | None = None if statements else False

    @classmethod
    def connect(
        cls, dsn: str, *, min_size: int = 1, max_size: int = 10, **pool_options: Any
    ) -> _Opening:
        """A client with a pool of its own: `await Queue.connect(dsn)` or `async with ...`."""

        async def open_queue() -> Queue:
            from orchestrator.db import create_pool

            pool = await create_pool(dsn, min_size=min_size, max_size=max_size, **pool_options)
            return cls(pool, owns_executor=True)

        return _Opening(open_queue)

    @property
    def executor(self) -> Executor:
        """The pool (or connection) queries run on when no `conn=` is given."""
        return self._executor

    async def close(self) -> None:
        """Close the pool if this client made it; a pool passed in is left to its owner."""
        if self._owns_executor:
            await self._executor.close()

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A connection in a transaction, to pass as `conn=`; commits unless an error escapes."""
        if isinstance(self._executor, asyncpg.Pool):
            async with self._executor.acquire() as conn, conn.transaction():
                yield conn
        else:
            async with self._executor.transaction():
                yield self._executor

    # --- running queries -----------------------------------------------------------------

    async def _fetch(self, conn: Executor, query: str, *args: Any) -> list[Any]:
        try:
            rows: list[Any] = await (self._executor if conn is None else conn).fetch(query, *args)
        except asyncpg.PostgresError as exc:
            error = _translated(exc)
            if error is None:
                raise
            raise error from exc
        return rows

    async def _fetchval(self, conn: Executor, query: str, *args: Any) -> Any:
        try:
            return await (self._executor if conn is None else conn).fetchval(query, *args)
        except asyncpg.PostgresError as exc:
            error = _translated(exc)
            if error is None:
                raise
            raise error from exc

    async def _fetchrow(self, conn: Executor, query: str, *args: Any) -> Any:
        try:
            return await (self._executor if conn is None else conn).fetchrow(query, *args)
        except asyncpg.PostgresError as exc:
            error = _translated(exc)
            if error is None:
                raise
            raise error from exc

    async def _load(self, conn: Executor, queue: str) -> Statements | None:
        """Fetch and keep the statements of `queue` (raises QueueNotFound for an unknown
        queue); None when the database has none to give (then the functions are used)."""
        if self._has_statements is None:
            self._has_statements = bool(await self._fetchval(conn, _Q["has_statements"]))
        if not self._has_statements:
            return None
        rows = await self._fetch(conn, _Q["statements"], queue)
        statements: Statements = {name: sql for name, sql in rows}
        if len(self._statements) >= MAX_CACHED_QUEUES:
            self._statements.clear()
        self._statements[queue] = statements
        return statements

    def _forget(self, queue: str) -> None:
        """Drop the kept statements of `queue` (under every spelling of its name)."""
        folded = queue.lower()
        for name in [name for name in self._statements if name.lower() == folded]:
            del self._statements[name]

    async def _run(
        self, conn: Executor, queue: str, statements: Statements, how: str, name: str, *args: Any
    ) -> Any:
        """Run statement `name` of `queue` with `how` (fetch, fetchval or execute).

        The statement names the queue's table. When that table is gone (the queue was
        dropped, perhaps created again since) the kept statements are dropped and, outside a
        transaction, fetched again and run once more: that raises QueueNotFound with the
        functions' message when the queue is gone for good. In a transaction the error has
        aborted it, so the error is raised at once.
        """
        executor = self._executor if conn is None else conn
        try:
            return await getattr(executor, how)(statements[name], *args)
        except (
            asyncpg.UndefinedTableError,
            asyncpg.UndefinedFunctionError,  # the queue's own function (partitioned by msg_id)
            asyncpg.InvalidCachedStatementError,
        ) as exc:
            self._forget(queue)
            in_transaction = not isinstance(executor, asyncpg.Pool) and bool(
                executor.is_in_transaction()
            )
            fresh = None if in_transaction else await self._load(conn, queue)
            if fresh is None:
                _raise_direct(exc, queue)
            statements = fresh
        except asyncpg.PostgresError as exc:
            _raise_direct(exc, queue)
        try:
            return await getattr(executor, how)(statements[name], *args)
        except asyncpg.PostgresError as exc:
            _raise_direct(exc, queue)

    # --- queues ------------------------------------------------------------------------

    async def create(self, queue: str, *, conn: Executor = None) -> None:
        """Create a queue; nothing happens when it exists already."""
        await self._fetchval(conn, _Q["create"], validate_queue_name(queue))

    async def create_unlogged(self, queue: str, *, conn: Executor = None) -> None:
        """Create a queue whose table is UNLOGGED: faster, emptied by a server crash."""
        await self._fetchval(conn, _Q["create_unlogged"], validate_queue_name(queue))

    async def create_partitioned(
        self,
        queue: str,
        partition_interval: int | str | timedelta = 10000,
        retention_interval: int | str | timedelta = 100000,
        *,
        conn: Executor = None,
    ) -> None:
        """Create a partitioned queue: intervals in messages (int) or time ('1 day')."""
        await self._fetchval(
            conn,
            _Q["create_partitioned"],
            validate_queue_name(queue),
            _interval_text(partition_interval),
            _interval_text(retention_interval),
        )

    async def drop(self, queue: str, *, conn: Executor = None) -> bool:
        """Drop a queue, its archive and its messages; False when there was no such queue."""
        return bool(await self._fetchval(conn, _Q["drop"], validate_queue_name(queue)))

    async def purge(self, queue: str, *, conn: Executor = None) -> int:
        """Delete every message of a queue (not its archive); returns how many."""
        return int(await self._fetchval(conn, _Q["purge"], validate_queue_name(queue)))

    async def list_queues(self, *, conn: Executor = None) -> list[QueueInfo]:
        """Every queue, oldest first."""
        rows = await self._fetch(conn, _Q["list_queues"])
        return [QueueInfo(*row) for row in rows]

    # --- sending -------------------------------------------------------------------------

    async def send(
        self,
        queue: str,
        message: JSON,
        *,
        headers: JSON = None,
        delay: Delay | None = None,
        conn: Executor = None,
    ) -> int:
        """Send one message; returns its msg_id. `delay`: seconds, timedelta or datetime."""
        validate_queue_name(queue)
        when: float | datetime
        if delay is None or delay == 0 or delay == _NO_TIME:
            name, when = "send", 0.0
        elif isinstance(delay, datetime):
            name, when = "send_at", _moment(delay, "delay")
        else:
            name, when = "send", _seconds(delay, "delay")
        statements = self._statements.get(queue) or await self._load(conn, queue)
        if statements is not None:
            return int(
                await self._run(conn, queue, statements, "fetchval", name, when, message, headers)
            )
        args: tuple[Any, ...]
        if name == "send_at":
            query, args = _Q["send_at"], (queue, message, headers, when)
        elif when:
            query, args = _Q["send_after"], (queue, message, headers, when)
        elif headers is None:
            query, args = _SEND, (queue, message)
        else:
            query, args = _SEND_HEADERS, (queue, message, headers)
        return int(await self._fetchval(conn, query, *args))

    async def send_batch(
        self,
        queue: str,
        messages: Sequence[JSON],
        *,
        headers: Sequence[JSON] | None = None,
        delay: Delay | None = None,
        conn: Executor = None,
    ) -> list[int]:
        """Send messages in one statement; returns their msg_ids in order."""
        validate_queue_name(queue)
        texts, header_texts = _batch_args(messages, headers)
        when: float | datetime
        if delay is None or delay == 0 or delay == _NO_TIME:
            name, when = "send_batch", 0.0
        elif isinstance(delay, datetime):
            name, when = "send_batch_at", _moment(delay, "delay")
        else:
            name, when = "send_batch", _seconds(delay, "delay")
        statements = self._statements.get(queue) or await self._load(conn, queue)
        if statements is not None:
            args = (when, texts, header_texts)
            rows = await self._run(conn, queue, statements, "fetch", name, *args)
        elif name == "send_batch_at":
            query = _Q["send_batch_at"]
            rows = await self._fetch(conn, query, queue, texts, header_texts, when)
        elif when:
            query = _Q["send_batch_after"]
            rows = await self._fetch(conn, query, queue, texts, header_texts, when)
        elif header_texts is None:
            rows = await self._fetch(conn, _Q["send_batch"], queue, texts)
        else:
            rows = await self._fetch(conn, _Q["send_batch_headers"], queue, texts, header_texts)
        return [row[0] for row in rows]

    # --- reading -------------------------------------------------------------------------

    async def read(
        self,
        queue: str,
        vt: int = 30,
        qty: int = 1,
        *,
        conditional: JSON = None,
        conn: Executor = None,
    ) -> list[Message]:
        """Up to `qty` visible messages, oldest first, each hidden from others for `vt` s."""
        validate_queue_name(queue)
        _check_read(vt, qty)
        statements = self._statements.get(queue) or await self._load(conn, queue)
        if statements is None:
            if conditional is None:
                rows = await self._fetch(conn, _READ, queue, vt, qty)
            else:
                rows = await self._fetch(conn, _Q["read_conditional"], queue, vt, qty, conditional)
        elif conditional is None or conditional == {}:
            if qty == 1:
                rows = await self._run(conn, queue, statements, "fetch", "read", vt)
            else:
                rows = await self._run(conn, queue, statements, "fetch", "read_many", vt, qty)
                rows.sort(key=_MSG_ID)
        elif qty == 1:
            name = "read_conditional"
            rows = await self._run(conn, queue, statements, "fetch", name, vt, conditional)
        else:
            name = "read_many_conditional"
            rows = await self._run(conn, queue, statements, "fetch", name, vt, qty, conditional)
            rows.sort(key=_MSG_ID)
        return [Message(*row) for row in rows]

    async def read_with_poll(
        self,
        queue: str,
        vt: int = 30,
        qty: int = 1,
        *,
        max_poll_seconds: int = 5,
        poll_interval_ms: int = 100,
        conditional: JSON = None,
        conn: Executor = None,
    ) -> list[Message]:
        """`read`, waiting up to `max_poll_seconds` for a message (holds a connection)."""
        rows = await self._fetch(
            conn,
            _Q["read_with_poll"],
            validate_queue_name(queue),
            vt,
            qty,
            max_poll_seconds,
            poll_interval_ms,
            {} if conditional is None else conditional,
        )
        return [Message(*row) for row in rows]

    async def pop(self, queue: str, qty: int = 1, *, conn: Executor = None) -> list[Message]:
        """Read and delete up to `qty` visible messages at once (at-most-once delivery)."""
        validate_queue_name(queue)
        _check_read(0, qty)
        statements = self._statements.get(queue) or await self._load(conn, queue)
        if statements is None:
            rows = await self._fetch(conn, _Q["pop"], queue, qty)
        elif qty == 1:
            rows = await self._run(conn, queue, statements, "fetch", "pop")
        else:
            rows = await self._run(conn, queue, statements, "fetch", "pop_many", qty)
            rows.sort(key=_MSG_ID)
        return [Message(*row) for row in rows]

    # --- acknowledging -------------------------------------------------------------------

    @overload
    async def delete(self, queue: str, msg_id: int, *, conn: Executor = None) -> bool: ...

    @overload
    async def delete(
        self, queue: str, msg_id: Sequence[int], *, conn: Executor = None
    ) -> list[int]: ...

    async def delete(
        self, queue: str, msg_id: int | Sequence[int], *, conn: Executor = None
    ) -> bool | list[int]:
        """Delete one message (-> whether it was there) or many (-> the ids deleted)."""
        validate_queue_name(queue)
        many = not isinstance(msg_id, int)
        if many and not msg_id:
            return []
        statements = self._statements.get(queue) or await self._load(conn, queue)
        if statements is None:
            if not many:
                return bool(await self._fetchval(conn, _DELETE, queue, msg_id))
            rows = await self._fetch(conn, _DELETE_MANY, queue, msg_id)
        elif not many:
            status = await self._run(conn, queue, statements, "execute", "delete", msg_id)
            return bool(status != "DELETE 0")
        else:
            rows = await self._run(conn, queue, statements, "fetch", "delete_many", msg_id)
        return [row[0] for row in rows]

    @overload
    async def archive(self, queue: str, msg_id: int, *, conn: Executor = None) -> bool: ...

    @overload
    async def archive(
        self, queue: str, msg_id: Sequence[int], *, conn: Executor = None
    ) -> list[int]: ...

    async def archive(
        self, queue: str, msg_id: int | Sequence[int], *, conn: Executor = None
    ) -> bool | list[int]:
        """Move one message (-> whether it was there) or many (-> the ids moved) to the
        queue's archive."""
        validate_queue_name(queue)
        many = not isinstance(msg_id, int)
        if many and not msg_id:
            return []
        statements = self._statements.get(queue) or await self._load(conn, queue)
        if statements is None:
            if not many:
                return bool(await self._fetchval(conn, _Q["archive"], queue, msg_id))
            rows = await self._fetch(conn, _Q["archive_many"], queue, msg_id)
        elif not many:
            moved = await self._run(conn, queue, statements, "fetchval", "archive", msg_id)
            return moved is not None
        else:
            rows = await self._run(conn, queue, statements, "fetch", "archive_many", msg_id)
        return [row[0] for row in rows]

    @overload
    async def set_vt(
        self, queue: str, msg_id: int, vt: Delay, *, conn: Executor = None
    ) -> Message | None: ...

    @overload
    async def set_vt(
        self, queue: str, msg_id: Sequence[int], vt: Delay, *, conn: Executor = None
    ) -> list[Message]: ...

    async def set_vt(
        self, queue: str, msg_id: int | Sequence[int], vt: Delay, *, conn: Executor = None
    ) -> Message | list[Message] | None:
        """Make messages visible `vt` from now (seconds, timedelta) or at `vt` (datetime).

        One id returns the updated message (None when it is not in the queue); a list of ids
        returns the messages updated.
        """
        validate_queue_name(queue)
        many = not isinstance(msg_id, int)
        when: datetime | float
        if isinstance(vt, datetime):
            name, when = ("set_vt_many_at" if many else "set_vt_at"), _moment(vt, "vt")
        else:
            name, when = ("set_vt_many" if many else "set_vt"), _seconds(vt, "vt")
        statements = self._statements.get(queue) or await self._load(conn, queue)
        if statements is not None:
            rows = await self._run(conn, queue, statements, "fetch", name, msg_id, when)
        else:
            query = _Q[name if isinstance(vt, datetime) else name + "_after"]
            rows = await self._fetch(conn, query, queue, msg_id, when)
        messages = [Message(*row) for row in rows]
        if many:
            return messages
        return messages[0] if messages else None

    # --- FIFO groups ---------------------------------------------------------------------

    async def read_grouped(
        self, queue: str, vt: int = 30, qty: int = 1, *, conn: Executor = None
    ) -> list[Message]:
        """FIFO groups (header `x-pgmq-group`), SQS style: as many consecutive messages as
        possible from the group whose head is oldest, then from the next group."""
        return await self._grouped(conn, "read_grouped", queue, vt, qty)

    async def read_grouped_rr(
        self, queue: str, vt: int = 30, qty: int = 1, *, conn: Executor = None
    ) -> list[Message]:
        """FIFO groups, round-robin: each group's head (oldest group first), then each
        group's second message, and so on."""
        return await self._grouped(conn, "read_grouped_rr", queue, vt, qty)

    async def read_grouped_head(
        self, queue: str, vt: int = 30, qty: int = 1, *, conn: Executor = None
    ) -> list[Message]:
        """FIFO groups, one message per group: the visible heads of up to `qty` groups."""
        return await self._grouped(conn, "read_grouped_head", queue, vt, qty)

    async def read_grouped_with_poll(
        self,
        queue: str,
        vt: int = 30,
        qty: int = 1,
        *,
        max_poll_seconds: int = 5,
        poll_interval_ms: int = 100,
        conn: Executor = None,
    ) -> list[Message]:
        """`read_grouped`, waiting up to `max_poll_seconds` for a message (holds a
        connection)."""
        poll = (max_poll_seconds, poll_interval_ms)
        return await self._grouped(conn, "read_grouped_with_poll", queue, vt, qty, *poll)

    async def read_grouped_rr_with_poll(
        self,
        queue: str,
        vt: int = 30,
        qty: int = 1,
        *,
        max_poll_seconds: int = 5,
        poll_interval_ms: int = 100,
        conn: Executor = None,
    ) -> list[Message]:
        """`read_grouped_rr`, waiting up to `max_poll_seconds` for a message."""
        poll = (max_poll_seconds, poll_interval_ms)
        return await self._grouped(conn, "read_grouped_rr_with_poll", queue, vt, qty, *poll)

    async def read_grouped_head_with_poll(
        self,
        queue: str,
        vt: int = 30,
        qty: int = 1,
        *,
        max_poll_seconds: int = 5,
        poll_interval_ms: int = 100,
        conn: Executor = None,
    ) -> list[Message]:
        """`read_grouped_head`, waiting up to `max_poll_seconds` for a message."""
        poll = (max_poll_seconds, poll_interval_ms)
        return await self._grouped(conn, "read_grouped_head_with_poll", queue, vt, qty, *poll)

    async def _grouped(
        self, conn: Executor, function: str, queue: str, vt: int, qty: int, *poll: int
    ) -> list[Message]:
        validate_queue_name(queue)
        _check_read(vt, qty)
        rows = await self._fetch(conn, _Q[function], queue, vt, qty, *poll)
        return [Message(*row) for row in rows]

    async def create_fifo_index(self, queue: str, *, conn: Executor = None) -> None:
        """The index that keeps a queue's grouped reads cheap at any depth (idempotent)."""
        await self._fetchval(conn, _Q["create_fifo_index"], validate_queue_name(queue))

    async def create_fifo_indexes_all(self, *, conn: Executor = None) -> None:
        """`create_fifo_index` on every queue."""
        await self._fetchval(conn, _Q["create_fifo_indexes_all"])

    # --- topics --------------------------------------------------------------------------

    async def bind_topic(self, pattern: str, queue: str, *, conn: Executor = None) -> None:
        """Route messages whose routing key matches `pattern` (`*` one segment, `#` zero or
        more) to `queue`; binding twice keeps one binding."""
        await self._fetchval(conn, _Q["bind_topic"], pattern, validate_queue_name(queue))

    async def unbind_topic(self, pattern: str, queue: str, *, conn: Executor = None) -> bool:
        """Remove a binding; whether there was one."""
        query = _Q["unbind_topic"]
        return bool(await self._fetchval(conn, query, pattern, validate_queue_name(queue)))

    async def send_topic(
        self,
        routing_key: str,
        message: JSON,
        *,
        headers: JSON = None,
        delay: int = 0,
        conn: Executor = None,
    ) -> int:
        """Send `message` once to every queue bound to `routing_key` (in the caller's
        transaction with `conn=`); returns how many queues got it. `delay`: whole seconds."""
        if message is None:
            raise QueueError("msg cannot be NULL")
        seconds = _whole(delay)
        if seconds is None or isinstance(delay, bool) or seconds < 0:
            raise QueueError(f"delay cannot be negative, got: {delay!r}")
        query = _Q["send_topic"]
        return int(await self._fetchval(conn, query, routing_key, message, headers, seconds))

    async def send_batch_topic(
        self,
        routing_key: str,
        messages: Sequence[JSON],
        *,
        headers: Sequence[JSON] | None = None,
        delay: Delay | None = None,
        conn: Executor = None,
    ) -> list[tuple[str, int]]:
        """Send a batch to every queue bound to `routing_key`: (queue, msg_id) of each
        message, queue by queue in name order."""
        texts, header_texts = _batch_args(messages, headers)
        when: float | datetime
        if isinstance(delay, datetime):
            query, when = _Q["send_batch_topic_at"], _moment(delay, "delay")
        else:
            query, when = _Q["send_batch_topic"], _seconds(delay or 0, "delay")
        rows = await self._fetch(conn, query, routing_key, texts, header_texts, when)
        return [(row[0], row[1]) for row in rows]

    async def list_topic_bindings(
        self, queue: str | None = None, *, conn: Executor = None
    ) -> list[TopicBinding]:
        """Every binding, or those of one queue; newest first."""
        if queue is None:
            rows = await self._fetch(conn, _Q["list_topic_bindings"])
        else:
            query = _Q["list_topic_bindings_of"]
            rows = await self._fetch(conn, query, validate_queue_name(queue))
        return [TopicBinding(*row) for row in rows]

    async def test_routing(self, routing_key: str, *, conn: Executor = None) -> list[TopicBinding]:
        """The bindings `routing_key` matches, sending nothing (`bound_at` is None)."""
        rows = await self._fetch(conn, _Q["test_routing"], routing_key)
        return [TopicBinding(row[0], row[1], None, row[2]) for row in rows]

    # --- metrics and notifications -------------------------------------------------------

    async def metrics(self, queue: str, *, conn: Executor = None) -> QueueMetrics:
        """Length, visible length, message ages and messages ever sent, of one queue."""
        row = await self._fetchrow(conn, _Q["metrics"], validate_queue_name(queue))
        return QueueMetrics(*row)

    async def metrics_all(self, *, conn: Executor = None) -> list[QueueMetrics]:
        """`metrics` of every queue, by name."""
        rows = await self._fetch(conn, _Q["metrics_all"])
        return [QueueMetrics(*row) for row in rows]

    async def enable_notify_insert(
        self, queue: str, throttle_interval_ms: int = 250, *, conn: Executor = None
    ) -> None:
        """NOTIFY `pgmq.q_<queue>.INSERT` when messages arrive, at most once per interval."""
        query = _Q["enable_notify_insert"]
        await self._fetchval(conn, query, validate_queue_name(queue), throttle_interval_ms)

    async def disable_notify_insert(self, queue: str, *, conn: Executor = None) -> None:
        """Stop a queue's insert notifications."""
        await self._fetchval(conn, _Q["disable_notify_insert"], validate_queue_name(queue))

    async def update_notify_insert(
        self, queue: str, throttle_interval_ms: int, *, conn: Executor = None
    ) -> None:
        """Change the throttle of a queue whose insert notifications are on."""
        query = _Q["update_notify_insert"]
        await self._fetchval(conn, query, validate_queue_name(queue), throttle_interval_ms)

    async def list_notify_insert_throttles(self, *, conn: Executor = None) -> list[NotifyThrottle]:
        """Queues with insert notifications, their throttle and their last notification."""
        rows = await self._fetch(conn, _Q["list_notify_insert_throttles"])
        return [NotifyThrottle(*row) for row in rows]


def notify_channel(queue: str) -> str:
    """The channel `enable_notify_insert` notifies on, for LISTEN."""
    return f"pgmq.q_{validate_queue_name(queue).lower()}.INSERT"


def _interval_text(value: int | str | timedelta) -> str:
    if isinstance(value, bool):
        raise QueueError(f"a partition interval must be a number or an interval, got {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, timedelta):
        return f"{value.total_seconds()} seconds"
    if isinstance(value, str):
        return value
    raise QueueError(f"a partition interval must be a number or an interval, got {value!r}")


class _Opening:
    """What `Queue.connect` returns: await it for a client, or use it with `async with`."""

    __slots__ = ("_open", "_queue")

    def __init__(self, open_queue: Callable[[], Coroutine[Any, Any, Queue]]) -> None:
        self._open = open_queue
        self._queue: Queue | None = None

    def __await__(self) -> Generator[Any, None, Queue]:
        return self._open().__await__()

    async def __aenter__(self) -> Queue:
        self._queue = await self._open()
        return self._queue

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._queue is not None:
            await self._queue.close()
