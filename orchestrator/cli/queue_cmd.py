"""`orchestrator install` and `orchestrator queue list|create|drop|purge|metrics`.

install puts the queue layer (schemas pgmq and pgmq_ext) into a database or upgrades it. The
queue commands are for operators: each is one call of the `Queue` client, which validates the
name, runs the queue layer's SQL and translates its errors, so they work the same on the real
pgmq extension. Dropping or purging a queue that belongs to an applied pipeline is refused
unless `--yes` is given, naming the pipeline. Commands whose output is data take `--json`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator.errors import NotFound, OrchestratorError, UsageError

if TYPE_CHECKING:
    from orchestrator.queue import Queue
    from orchestrator.queue.models import QueueInfo

T = TypeVar("T")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `install` and the `queue` command group."""
    install = sub.add_parser(
        "install",
        help="install or upgrade the queue layer in the database",
        description=(
            "Install the PGMQ-compatible queue layer, or upgrade it to this version. "
            "Idempotent; a database with the real pgmq extension is left alone."
        ),
    )
    install.add_argument(
        "--adopt",
        action="store_true",
        help="take over a PGMQ already in the database (installed from its SQL files or as "
        "the extension) in one transaction, keeping every queue and message; prints what it "
        "kept and changed, or refuses with a report and changes nothing",
    )
    install.set_defaults(func=_install)

    queue = sub.add_parser(
        "queue",
        help="list, create, drop, purge queues; queue metrics",
        description="Queue-level operations, through the queue layer's client.",
    )
    actions = queue.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser("list", help="list the queues")
    listing.set_defaults(func=_list)

    create = actions.add_parser(
        "create",
        help="create a queue (nothing happens when it exists)",
        description=(
            "Create a queue: plain, --unlogged (fast, emptied after a crash) or --partitioned. "
            "Creating a queue that exists changes nothing."
        ),
    )
    create.add_argument("name", help="queue name: letters, digits and underscores, at most 47")
    kind = create.add_mutually_exclusive_group()
    kind.add_argument("--unlogged", action="store_true", help="an UNLOGGED queue table")
    kind.add_argument("--partitioned", action="store_true", help="a partitioned queue")
    create.add_argument(
        "--partition-interval",
        metavar="N|INTERVAL",
        default="10000",
        help="messages per partition, or a time interval such as '1 day' (default: 10000)",
    )
    create.add_argument(
        "--retention-interval",
        metavar="N|INTERVAL",
        default="100000",
        help="keep this many messages, or this long, e.g. '7 days' (default: 100000)",
    )
    create.set_defaults(func=_create)

    drop = actions.add_parser("drop", help="drop a queue with its messages and archive")
    drop.add_argument("name")
    _yes(drop)
    drop.set_defaults(func=_drop)

    purge = actions.add_parser("purge", help="delete every message of a queue (not its archive)")
    purge.add_argument("name")
    _yes(purge)
    purge.set_defaults(func=_purge)

    metrics = actions.add_parser("metrics", help="length, ages and totals of one or every queue")
    metrics.add_argument("name", nargs="?", help="one queue (default: every queue)")
    metrics.set_defaults(func=_metrics)


def _yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="also when the queue belongs to an applied pipeline",
    )


def _checked_name(args: argparse.Namespace) -> None:
    """Refuse a name the queue layer would refuse, before any connection (exit 1)."""
    from orchestrator.queue.client import validate_queue_name

    if args.name is not None:
        validate_queue_name(args.name)


# -- install -----------------------------------------------------------------------------------


def _install(args: argparse.Namespace) -> int:
    from orchestrator.db import resolve_dsn
    from orchestrator.queue.install import install_dsn

    result = asyncio.run(install_dsn(resolve_dsn(args.dsn), adopt=args.adopt))
    print(result.message())
    return 0


# -- queue commands ----------------------------------------------------------------------------


def _with_queue(args: argparse.Namespace, work: Callable[[Queue], Awaitable[T]]) -> T:
    """Run `work` with a `Queue` client of one connection, closed afterwards."""
    from orchestrator.db import resolve_dsn
    from orchestrator.queue import Queue

    async def run() -> T:
        async with Queue.connect(resolve_dsn(args.dsn), min_size=1, max_size=1) as client:
            return await work(client)

    return asyncio.run(run())


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=_json_default, indent=2))


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _kind(info: QueueInfo) -> str:
    if info.is_partitioned:
        return "partitioned"
    return "unlogged" if info.is_unlogged else "plain"


def _list(args: argparse.Namespace) -> int:
    from orchestrator.cli.format import timestamp

    queues = _with_queue(args, lambda q: q.list_queues())
    if args.json:
        _print_json([dataclasses.asdict(q) for q in queues])
    elif not queues:
        print("no queues")
    else:
        width = max(len("QUEUE"), *(len(q.queue_name) for q in queues))
        print(f"{'QUEUE':<{width}}  {'KIND':<11}  CREATED")
        for q in queues:
            created = timestamp(q.created_at)
            print(f"{q.queue_name:<{width}}  {_kind(q):<11}  {created}")
    return 0


def _create(args: argparse.Namespace) -> int:
    _checked_name(args)

    async def work(client: Queue) -> bool:
        name = args.name.lower()
        existed = any(q.queue_name == name for q in await client.list_queues())
        if args.partitioned:
            await client.create_partitioned(
                args.name, _interval(args.partition_interval), _interval(args.retention_interval)
            )
        elif args.unlogged:
            await client.create_unlogged(args.name)
        else:
            await client.create(args.name)
        return existed

    existed = _with_queue(args, work)
    name = args.name.lower()
    print(f"queue {name} already exists" if existed else f"created queue {name}")
    return 0


def _interval(text: str) -> int | str:
    """A partition interval: a message count, or a time interval as PostgreSQL writes it."""
    return int(text) if text.isdigit() else text


async def _owner(client: Queue, queue: str) -> str | None:
    """The applied pipeline whose step or dead letters use `queue`, None when none does (or
    the database has no applied pipelines)."""
    from orchestrator.state import applied_pipelines

    async with client.transaction() as conn:
        try:
            pipelines = await applied_pipelines(conn)
        except OrchestratorError:
            return None
    return next((p.name for p in pipelines if queue.lower() in p.queue_names()), None)


async def _refuse_owned(client: Queue, args: argparse.Namespace, verb: str) -> None:
    owner = None if args.yes else await _owner(client, args.name)
    if owner is not None:
        raise UsageError(
            f"queue {args.name.lower()} belongs to pipeline {owner}: {verb} it with --yes, "
            f"or change the pipeline and run `orchestrator apply`"
        )


def _drop(args: argparse.Namespace) -> int:
    _checked_name(args)

    async def work(client: Queue) -> bool:
        await _refuse_owned(client, args, "drop")
        return await client.drop(args.name)

    if not _with_queue(args, work):
        raise NotFound(f'queue "{args.name}" does not exist')
    print(f"dropped queue {args.name.lower()}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    _checked_name(args)

    async def work(client: Queue) -> int:
        await _refuse_owned(client, args, "purge")
        return await client.purge(args.name)

    count = _with_queue(args, work)
    name = args.name.lower()
    if args.json:
        _print_json({"queue_name": name, "purged": count})
    else:
        print(f"purged {count} message{'' if count == 1 else 's'} from queue {name}")
    return 0


def _metrics(args: argparse.Namespace) -> int:
    _checked_name(args)

    async def work(client: Queue) -> list[Any]:
        if args.name is None:
            return list(await client.metrics_all())
        return [await client.metrics(args.name)]

    rows = _with_queue(args, work)
    if args.json:
        found = [dataclasses.asdict(r) for r in rows]
        _print_json(found[0] if args.name is not None else found)
        return 0
    if not rows:
        print("no queues")
        return 0
    width = max(len("QUEUE"), *(len(r.queue_name) for r in rows))
    print(f"{'QUEUE':<{width}}  {'LENGTH':>8}  {'VISIBLE':>8}  {'OLDEST_S':>8}  {'TOTAL':>10}")
    for r in rows:
        oldest = "-" if r.oldest_msg_age_sec is None else str(r.oldest_msg_age_sec)
        print(
            f"{r.queue_name:<{width}}  {r.queue_length:>8}  "
            f"{r.queue_visible_length:>8}  {oldest:>8}  {r.total_messages:>10}"
        )
    return 0
