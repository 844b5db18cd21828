"""Errors: unknown queues, bad names (refused before any round trip), refused arguments."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from orchestrator.errors import NotFound, QueueError, SchemaMissing
from orchestrator.queue import InvalidQueueName, Queue, QueueNotFound, validate_queue_name

CALLS: dict[str, Callable[[Queue, str], Awaitable[Any]]] = {
    "create": lambda q, name: q.create(name),
    "create_unlogged": lambda q, name: q.create_unlogged(name),
    "create_partitioned": lambda q, name: q.create_partitioned(name),
    "drop": lambda q, name: q.drop(name),
    "purge": lambda q, name: q.purge(name),
    "send": lambda q, name: q.send(name, {"a": 1}),
    "send_headers": lambda q, name: q.send(name, {"a": 1}, headers={"h": 1}),
    "send_delay": lambda q, name: q.send(name, {"a": 1}, delay=5),
    "send_batch": lambda q, name: q.send_batch(name, [{"a": 1}]),
    "read": lambda q, name: q.read(name),
    "read_conditional": lambda q, name: q.read(name, conditional={"a": 1}),
    "read_with_poll": lambda q, name: q.read_with_poll(name, max_poll_seconds=0),
    "pop": lambda q, name: q.pop(name),
    "delete": lambda q, name: q.delete(name, 1),
    "delete_many": lambda q, name: q.delete(name, [1, 2]),
    "archive": lambda q, name: q.archive(name, 1),
    "archive_many": lambda q, name: q.archive(name, [1]),
    "set_vt": lambda q, name: q.set_vt(name, 1, 10),
    "set_vt_many": lambda q, name: q.set_vt(name, [1], 10),
    "metrics": lambda q, name: q.metrics(name),
    "enable_notify_insert": lambda q, name: q.enable_notify_insert(name),
    "disable_notify_insert": lambda q, name: q.disable_notify_insert(name),
}
NEEDS_A_QUEUE = sorted(set(CALLS) - {"create", "create_unlogged", "create_partitioned", "drop"})


class NoRoundTrip:
    """An executor that fails the test if the client sends it anything."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the client used the database ({name}) for an invalid name")


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "must not be empty"),
        ("x" * 48, "queue name is too long, maximum length is 47 characters"),
        ("bad--name", "queue name contains invalid characters: \\$, ;, --, or \\\\'"),
        ("semi;colon", "queue name contains invalid characters"),
        ("dot.name", "invalid queue name 'dot.name'"),
        ('quo"te', "invalid queue name"),
        ("space d", "invalid queue name"),
        ("caf\u00e9", "invalid queue name"),
        ("\uff41bc", "invalid queue name"),  # fullwidth letter a
        ("trailing\n", "invalid queue name"),
    ],
)
async def test_bad_names_fail_before_any_round_trip(call: str, name: str, problem: str) -> None:
    with pytest.raises(InvalidQueueName, match=problem):
        await CALLS[call](Queue(NoRoundTrip()), name)


@pytest.mark.parametrize("name", [None, 5, b"jobs"])
def test_names_must_be_strings(name: Any) -> None:
    with pytest.raises(InvalidQueueName, match="must be a string"):
        validate_queue_name(name)


@pytest.mark.parametrize("name", ["a", "A_1", "x" * 47, "_", "9lives"])
def test_good_names(name: str) -> None:
    assert validate_queue_name(name) == name


@pytest.mark.parametrize("call", NEEDS_A_QUEUE)
async def test_unknown_queue_raises_queue_not_found(q: Queue, call: str) -> None:
    with pytest.raises(QueueNotFound, match='queue "nowhere" does not exist') as raised:
        await CALLS[call](q, "nowhere")
    assert isinstance(raised.value, QueueError)
    assert isinstance(raised.value, NotFound)


async def test_unknown_queue_in_a_caller_transaction(q: Queue, conn: Any) -> None:
    async with conn.transaction():
        await conn.execute("SAVEPOINT before_send")
        with pytest.raises(QueueNotFound):
            await q.send("nowhere", 1, conn=conn)
        await conn.execute("ROLLBACK TO SAVEPOINT before_send")
        await q.send("jobs", 1, conn=conn)
    assert len(await q.read("jobs")) == 1


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda q: q.read("jobs", qty=0), "qty must be a positive number"),
        (lambda q: q.read("jobs", qty=-3), "qty must be a positive number"),
        (lambda q: q.read("jobs", vt=-1), "vt must be a number of seconds >= 0"),
        (lambda q: q.read_with_poll("jobs", qty=0), "qty must be a positive number"),
        (lambda q: q.read_with_poll("jobs", max_poll_seconds=-1), "max_poll_seconds"),
        (lambda q: q.read_with_poll("jobs", poll_interval_ms=0), "poll_interval_ms"),
        (lambda q: q.pop("jobs", 0), "qty must be a positive number"),
        (lambda q: q.enable_notify_insert("jobs", -1), "throttle_interval_ms"),
        (lambda q: q.create_partitioned("p", "soon", "later"), "partition_interval"),
        (lambda q: q.create_partitioned("p", 10, "1 day"), "both be numbers"),
        (lambda q: q.send("jobs", 1, delay=10**14), "out of range"),
    ],
)
async def test_refused_arguments_raise_queue_error(
    q: Queue, call: Callable[[Queue], Awaitable[Any]], problem: str
) -> None:
    with pytest.raises(QueueError, match=problem) as raised:
        await call(q)
    assert not isinstance(raised.value, QueueNotFound)


async def test_bad_partition_interval_type(q: Queue) -> None:
    with pytest.raises(QueueError, match="partition interval"):
        await q.create_partitioned("p", True)
    with pytest.raises(QueueError, match="partition interval"):
        await q.create_partitioned("p", 1.5)  # type: ignore[arg-type]


async def test_a_table_in_the_way_is_a_queue_error(q: Queue, conn: Any) -> None:
    await conn.execute("CREATE TABLE pgmq.a_taken (id int)")
    with pytest.raises(QueueError, match="taken by another object"):
        await q.create("taken")


async def test_database_without_the_queue_layer(empty_dsn: str) -> None:
    async with Queue.connect(empty_dsn) as q:
        with pytest.raises(SchemaMissing, match="orchestrator install"):
            await q.send("jobs", {"a": 1})
        with pytest.raises(SchemaMissing):
            await q.list_queues()


async def test_other_database_errors_propagate_unchanged(q: Queue, conn: Any) -> None:
    import asyncpg

    await conn.execute("SET statement_timeout = '50ms'")
    with pytest.raises(asyncpg.QueryCanceledError):
        await q.read_with_poll("jobs", max_poll_seconds=2, conn=conn)
