"""`PGMQueue`: a synchronous facade over the async `Queue` client, in the shape of PGMQ's
Python examples (`queue.send(...)`, `queue.read(...)`, `msg["message"]`, `queue.delete(...)`).

Each instance runs a private event loop in a daemon thread and submits every call to it, so it
works from plain scripts, from several threads at once, and even from inside someone else's
event loop (the call blocks that loop, as any synchronous client does). There is one driver:
the async client's asyncpg pool, with orchestrator's jsonb codec.

`with queue.transaction() as tx:` binds calls to one connection inside one transaction:
`tx.send(...)`, `tx.delete(...)` and `tx.execute(sql, ...)` commit together, or roll back
together when the block raises.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from datetime import timedelta
from typing import Any, TypeVar, overload
from urllib.parse import quote, urlencode

from orchestrator.queue.client import Delay, Queue
from orchestrator.queue.models import (
    JSON,
    Message,
    NotifyThrottle,
    QueueInfo,
    QueueMetrics,
    TopicBinding,
)

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread; `run` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self._serve, name="orchestrator-pgmqueue", daemon=True
        )
        self.thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("PGMQueue called from its own event loop thread")
        if self.loop.is_closed():
            coro.close()
            raise RuntimeError("this PGMQueue is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self.thread:
            self.thread.join()
            self.loop.close()


def _shutdown(runner: _LoopThread, client: Queue) -> None:
    """Close the pool and stop the loop (also run by the finalizer of a forgotten PGMQueue)."""
    if runner.loop.is_closed():
        return
    if threading.current_thread() is runner.thread:
        runner.loop.create_task(client.close())
    else:
        try:
            runner.run(client.close())
        finally:
            runner.stop()
        return
    runner.stop()


def build_url(
    host: str | None = None,
    port: int | str | None = None,
    database: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> str:
    """A postgresql:// URL from parts (PG_HOST, PG_PORT, ... or libpq's PG* defaults)."""
    host = host or os.environ.get("PG_HOST") or os.environ.get("PGHOST") or "localhost"
    port = port or os.environ.get("PG_PORT") or os.environ.get("PGPORT") or 5432
    database = database or os.environ.get("PG_DATABASE") or os.environ.get("PGDATABASE")
    username = username or os.environ.get("PG_USERNAME") or os.environ.get("PGUSER") or "postgres"
    password = password or os.environ.get("PG_PASSWORD") or os.environ.get("PGPASSWORD")
    auth = quote(username, safe="") + (":" + quote(password, safe="") if password else "")
    path = "/" + quote(database or "postgres", safe="")
    if host.startswith("/"):  # a Unix socket directory
        return f"postgresql://{auth}@{path}?{urlencode({'host': host, 'port': str(port)})}"
    return f"postgresql://{auth}@{host}:{port}{path}"


class PGMQueue:
    """Synchronous queue client: `PGMQueue(database_url=...)` or `PGMQueue(host=..., ...)`.

    Without a URL or any connection part it connects where orchestrator does: `DATABASE_URL`,
    else the embedded server. `vt` is the visibility timeout `read` uses when none is given.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        host: str | None = None,
        port: int | str | None = None,
        database: str | None = None,
        username: str | None = None,
        password: str | None = None,
        vt: int = 30,
        pool_size: int = 10,
        **pool_options: Any,
    ) -> None:
        parts = (host, port, database, username, password)
        if database_url:
            dsn = database_url
        elif any(part is not None for part in parts):
            dsn = build_url(*parts)
        else:
            from orchestrator.db import resolve_dsn

            dsn = resolve_dsn(None)
        self.vt = vt
        self._conn: Any = None
        self._runner = _LoopThread()
        try:
            self._client = self._runner.run(_open(dsn, pool_size, pool_options))
        except BaseException:
            self._runner.stop()
            raise
        self._finalizer = weakref.finalize(self, _shutdown, self._runner, self._client)

    @property
    def client(self) -> Queue:
        """The async client underneath (its methods must run on this instance's loop)."""
        return self._client

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def close(self) -> None:
        """Close the connections and stop the background loop (a transaction's view: no-op)."""
        if self._conn is None:
            self._finalizer()

    def __enter__(self) -> PGMQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[PGMQueue]:
        """A view of this queue whose calls run in one transaction; commits at the end of the
        `with` block, rolls back if it raises."""
        if self._conn is not None:
            raise RuntimeError("already in a transaction: use the outer transaction's view")
        manager = self._client.transaction()
        conn = self._run(_enter(manager))
        view = object.__new__(PGMQueue)
        view.vt, view._conn, view._runner, view._client = self.vt, conn, self._runner, self._client
        try:
            yield view
        except BaseException as exc:
            self._run(manager.__aexit__(type(exc), exc, exc.__traceback__))
            raise
        else:
            self._run(manager.__aexit__(None, None, None))
        finally:
            view._conn = _CLOSED

    def execute(self, query: str, *args: Any) -> str:
        """Run SQL of your own (in the transaction, for a transaction's view); returns the
        command status."""
        status: str = self._run(self._executor().execute(query, *args))
        return status

    def fetch(self, query: str, *args: Any) -> list[Any]:
        """Rows of SQL of your own (asyncpg Records)."""
        rows: list[Any] = self._run(self._executor().fetch(query, *args))
        return rows

    def _executor(self) -> Any:
        conn = self._on()
        return self._client.executor if conn is None else conn

    def _on(self) -> Any:
        """The transaction's connection (None outside a transaction)."""
        if self._conn is _CLOSED:
            raise RuntimeError("this transaction has ended")
        return self._conn

    # --- queues ------------------------------------------------------------------------

    def create_queue(self, queue: str, unlogged: bool = False) -> None:
        """Create a queue (nothing happens when it exists)."""
        if unlogged:
            self._run(self._client.create_unlogged(queue, conn=self._on()))
        else:
            self._run(self._client.create(queue, conn=self._on()))

    def create(self, queue: str) -> None:
        self.create_queue(queue)

    def create_unlogged(self, queue: str) -> None:
        self.create_queue(queue, unlogged=True)

    def create_partitioned_queue(
        self,
        queue: str,
        partition_interval: int | str | timedelta = 10000,
        retention_interval: int | str | timedelta = 100000,
    ) -> None:
        """Create a partitioned queue (intervals in messages, or time such as '1 day')."""
        coro = self._client.create_partitioned(
            queue, partition_interval, retention_interval, conn=self._on()
        )
        self._run(coro)

    create_partitioned = create_partitioned_queue

    def drop_queue(self, queue: str) -> bool:
        """Drop a queue and its archive; False when there was no such queue."""
        return self._run(self._client.drop(queue, conn=self._on()))

    def purge(self, queue: str) -> int:
        """Delete every message of a queue; returns how many."""
        return self._run(self._client.purge(queue, conn=self._on()))

    purge_queue = purge

    def list_queues(self) -> list[QueueInfo]:
        return self._run(self._client.list_queues(conn=self._on()))

    # --- sending -------------------------------------------------------------------------

    def send(
        self,
        queue: str,
        message: JSON,
        delay: Delay | None = None,
        *,
        headers: JSON = None,
        delay_seconds: Delay | None = None,
    ) -> int:
        """Send one message; returns its msg_id. `delay`/`delay_seconds`: seconds,
        timedelta or datetime."""
        when = _one_delay(delay, delay_seconds)
        coro = self._client.send(queue, message, headers=headers, delay=when, conn=self._on())
        return self._run(coro)

    def send_batch(
        self,
        queue: str,
        messages: Sequence[JSON],
        delay: Delay | None = None,
        *,
        headers: Sequence[JSON] | None = None,
        delay_seconds: Delay | None = None,
    ) -> list[int]:
        """Send messages in one statement; returns their msg_ids in order."""
        when = _one_delay(delay, delay_seconds)
        coro = self._client.send_batch(
            queue, messages, headers=headers, delay=when, conn=self._on()
        )
        return self._run(coro)

    # --- reading -------------------------------------------------------------------------

    def read(
        self, queue: str, vt: int | None = None, qty: int = 1, *, conditional: JSON = None
    ) -> list[Message]:
        """Up to `qty` visible messages (`msg["message"]`, `msg.msg_id`, ...), oldest first."""
        vt = self.vt if vt is None else vt
        coro = self._client.read(queue, vt, qty, conditional=conditional, conn=self._on())
        return self._run(coro)

    def read_with_poll(
        self,
        queue: str,
        vt: int | None = None,
        qty: int = 1,
        max_poll_seconds: int = 5,
        poll_interval_ms: int = 100,
        *,
        conditional: JSON = None,
    ) -> list[Message]:
        """`read`, waiting up to `max_poll_seconds` for a message."""
        coro = self._client.read_with_poll(
            queue,
            self.vt if vt is None else vt,
            qty,
            max_poll_seconds=max_poll_seconds,
            poll_interval_ms=poll_interval_ms,
            conditional=conditional,
            conn=self._on(),
        )
        return self._run(coro)

    def pop(self, queue: str, qty: int = 1) -> list[Message]:
        """Read and delete up to `qty` messages at once (at-most-once)."""
        return self._run(self._client.pop(queue, qty, conn=self._on()))

    # --- acknowledging -------------------------------------------------------------------

    @overload
    def delete(self, queue: str, msg_id: int) -> bool: ...

    @overload
    def delete(self, queue: str, msg_id: Sequence[int]) -> list[int]: ...

    def delete(self, queue: str, msg_id: int | Sequence[int]) -> bool | list[int]:
        """Delete one message (-> whether it was there) or many (-> the ids deleted)."""
        if isinstance(msg_id, int):
            return self._run(self._client.delete(queue, msg_id, conn=self._on()))
        return self._run(self._client.delete(queue, msg_id, conn=self._on()))

    def delete_batch(self, queue: str, msg_ids: Sequence[int]) -> list[int]:
        return self._run(self._client.delete(queue, list(msg_ids), conn=self._on()))

    @overload
    def archive(self, queue: str, msg_id: int) -> bool: ...

    @overload
    def archive(self, queue: str, msg_id: Sequence[int]) -> list[int]: ...

    def archive(self, queue: str, msg_id: int | Sequence[int]) -> bool | list[int]:
        """Move one message (-> whether it was there) or many (-> the ids moved) to the
        archive."""
        if isinstance(msg_id, int):
            return self._run(self._client.archive(queue, msg_id, conn=self._on()))
        return self._run(self._client.archive(queue, msg_id, conn=self._on()))

    def archive_batch(self, queue: str, msg_ids: Sequence[int]) -> list[int]:
        return self._run(self._client.archive(queue, list(msg_ids), conn=self._on()))

    @overload
    def set_vt(self, queue: str, msg_id: int, vt: Delay) -> Message | None: ...

    @overload
    def set_vt(self, queue: str, msg_id: Sequence[int], vt: Delay) -> list[Message]: ...

    def set_vt(
        self, queue: str, msg_id: int | Sequence[int], vt: Delay
    ) -> Message | list[Message] | None:
        """Make messages visible `vt` seconds from now, or at the datetime `vt`."""
        if isinstance(msg_id, int):
            return self._run(self._client.set_vt(queue, msg_id, vt, conn=self._on()))
        return self._run(self._client.set_vt(queue, msg_id, vt, conn=self._on()))

    # --- FIFO groups ---------------------------------------------------------------------

    def read_grouped(self, queue: str, vt: int | None = None, qty: int = 1) -> list[Message]:
        """Consecutive messages of the oldest group first, then of the next (SQS FIFO)."""
        vt = self.vt if vt is None else vt
        return self._run(self._client.read_grouped(queue, vt, qty, conn=self._on()))

    def read_grouped_rr(self, queue: str, vt: int | None = None, qty: int = 1) -> list[Message]:
        """Each group's head, then each group's second message, and so on."""
        vt = self.vt if vt is None else vt
        return self._run(self._client.read_grouped_rr(queue, vt, qty, conn=self._on()))

    def read_grouped_head(self, queue: str, vt: int | None = None, qty: int = 1) -> list[Message]:
        """At most one message per group: the visible heads of up to `qty` groups."""
        vt = self.vt if vt is None else vt
        return self._run(self._client.read_grouped_head(queue, vt, qty, conn=self._on()))

    def read_grouped_with_poll(
        self,
        queue: str,
        vt: int | None = None,
        qty: int = 1,
        max_poll_seconds: int = 5,
        poll_interval_ms: int = 100,
    ) -> list[Message]:
        """`read_grouped`, waiting up to `max_poll_seconds` for a message."""
        coro = self._client.read_grouped_with_poll(
            queue,
            self.vt if vt is None else vt,
            qty,
            max_poll_seconds=max_poll_seconds,
            poll_interval_ms=poll_interval_ms,
            conn=self._on(),
        )
        return self._run(coro)

    def read_grouped_rr_with_poll(
        self,
        queue: str,
        vt: int | None = None,
        qty: int = 1,
        max_poll_seconds: int = 5,
        poll_interval_ms: int = 100,
    ) -> list[Message]:
        """`read_grouped_rr`, waiting up to `max_poll_seconds` for a message."""
        coro = self._client.read_grouped_rr_with_poll(
            queue,
            self.vt if vt is None else vt,
            qty,
            max_poll_seconds=max_poll_seconds,
            poll_interval_ms=poll_interval_ms,
            conn=self._on(),
        )
        return self._run(coro)

    def read_grouped_head_with_poll(
        self,
        queue: str,
        vt: int | None = None,
        qty: int = 1,
        max_poll_seconds: int = 5,
        poll_interval_ms: int = 100,
    ) -> list[Message]:
        """`read_grouped_head`, waiting up to `max_poll_seconds` for a message."""
        coro = self._client.read_grouped_head_with_poll(
            queue,
            self.vt if vt is None else vt,
            qty,
            max_poll_seconds=max_poll_seconds,
            poll_interval_ms=poll_interval_ms,
            conn=self._on(),
        )
        return self._run(coro)

    def create_fifo_index(self, queue: str) -> None:
        self._run(self._client.create_fifo_index(queue, conn=self._on()))

    def create_fifo_indexes_all(self) -> None:
        self._run(self._client.create_fifo_indexes_all(conn=self._on()))

    # --- topics --------------------------------------------------------------------------

    def bind_topic(self, pattern: str, queue: str) -> None:
        self._run(self._client.bind_topic(pattern, queue, conn=self._on()))

    def unbind_topic(self, pattern: str, queue: str) -> bool:
        return self._run(self._client.unbind_topic(pattern, queue, conn=self._on()))

    def send_topic(
        self, routing_key: str, message: JSON, delay: int = 0, *, headers: JSON = None
    ) -> int:
        """Send to every queue bound to `routing_key`; returns how many queues got it."""
        coro = self._client.send_topic(
            routing_key, message, headers=headers, delay=delay, conn=self._on()
        )
        return self._run(coro)

    def send_batch_topic(
        self,
        routing_key: str,
        messages: Sequence[JSON],
        delay: Delay | None = None,
        *,
        headers: Sequence[JSON] | None = None,
    ) -> list[tuple[str, int]]:
        """Send a batch to every queue bound to `routing_key`: (queue, msg_id) of each."""
        coro = self._client.send_batch_topic(
            routing_key, messages, headers=headers, delay=delay, conn=self._on()
        )
        return self._run(coro)

    def list_topic_bindings(self, queue: str | None = None) -> list[TopicBinding]:
        return self._run(self._client.list_topic_bindings(queue, conn=self._on()))

    def test_routing(self, routing_key: str) -> list[TopicBinding]:
        return self._run(self._client.test_routing(routing_key, conn=self._on()))

    # --- metrics and notifications -------------------------------------------------------

    def metrics(self, queue: str) -> QueueMetrics:
        return self._run(self._client.metrics(queue, conn=self._on()))

    def metrics_all(self) -> list[QueueMetrics]:
        return self._run(self._client.metrics_all(conn=self._on()))

    def enable_notify_insert(self, queue: str, throttle_interval_ms: int = 250) -> None:
        coro = self._client.enable_notify_insert(queue, throttle_interval_ms, conn=self._on())
        self._run(coro)

    def disable_notify_insert(self, queue: str) -> None:
        self._run(self._client.disable_notify_insert(queue, conn=self._on()))

    def update_notify_insert(self, queue: str, throttle_interval_ms: int) -> None:
        coro = self._client.update_notify_insert(queue, throttle_interval_ms, conn=self._on())
        self._run(coro)

    def list_notify_insert_throttles(self) -> list[NotifyThrottle]:
        return self._run(self._client.list_notify_insert_throttles(conn=self._on()))


# Marks the view of a transaction that has ended.
_CLOSED: Any = object()


async def _open(dsn: str, pool_size: int, pool_options: dict[str, Any]) -> Queue:
    return await Queue.connect(dsn, min_size=1, max_size=pool_size, **pool_options)


async def _enter(manager: AbstractAsyncContextManager[Any]) -> Any:
    return await manager.__aenter__()


def _one_delay(delay: Delay | None, delay_seconds: Delay | None) -> Delay | None:
    if delay is not None and delay_seconds is not None:
        raise TypeError("pass delay or delay_seconds, not both")
    return delay if delay is not None else delay_seconds
