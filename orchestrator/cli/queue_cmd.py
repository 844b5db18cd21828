"""`orchestrator install` and `orchestrator queue list|create|drop|purge|metrics`.

install puts the queue layer (schemas pgmq and pgmq_ext) into a database or upgrades it. The
queue commands are for operators: each is one call of the queue layer's SQL API with the queue
name as a query parameter, so they work the same on the real pgmq extension. Commands whose
output is data take `--json`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from orchestrator.cli import add_dsn_option
from orchestrator.errors import NotFound, OrchestratorError, QueueError, SchemaMissing

T = TypeVar("T")

NOT_INSTALLED = "the queue layer is not installed in this database; run `orchestrator install`"


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
    add_dsn_option(install)
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
        description="Queue-level operations, straight on the queue layer's SQL functions.",
    )
    actions = queue.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser("list", help="list the queues")
    _options(listing, json_output=True)
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
    _options(create)
    create.set_defaults(func=_create)

    drop = actions.add_parser("drop", help="drop a queue with its messages and archive")
    drop.add_argument("name")
    _options(drop)
    drop.set_defaults(func=_drop)

    purge = actions.add_parser("purge", help="delete every message of a queue (not its archive)")
    purge.add_argument("name")
    _options(purge, json_output=True)
    purge.set_defaults(func=_purge)

    metrics = actions.add_parser("metrics", help="length, ages and totals of one or every queue")
    metrics.add_argument("name", nargs="?", help="one queue (default: every queue)")
    _options(metrics, json_output=True)
    metrics.set_defaults(func=_metrics)


def _checked_name(args: argparse.Namespace) -> None:
    """Refuse a name the queue layer would refuse, before any SQL runs (exit 1)."""
    from orchestrator.queue.client import validate_queue_name

    if args.name is not None:
        validate_queue_name(args.name)


def _options(parser: argparse.ArgumentParser, *, json_output: bool = False) -> None:
    add_dsn_option(parser)
    if json_output:
        parser.add_argument("--json", action="store_true", help="print JSON")


# -- install -----------------------------------------------------------------------------------


def _install(args: argparse.Namespace) -> int:
    from orchestrator.db import resolve_dsn
    from orchestrator.queue.install import install_dsn

    dsn = resolve_dsn(args.dsn)
    try:
        result = asyncio.run(install_dsn(dsn, adopt=args.adopt))
    except asyncpg.PostgresError as exc:
        raise QueueError(f"cannot install the queue layer: {_one_line(exc)}") from None
    print(result.message())
    return 0


# -- queue commands ----------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    return " ".join(text.split())


def _error(exc: asyncpg.PostgresError) -> OrchestratorError:
    """A driver error as the one-line error the CLI prints."""
    message = _one_line(exc)
    if isinstance(exc, asyncpg.UndefinedTableError) and message.startswith("queue "):
        return NotFound(message)
    if isinstance(exc, asyncpg.InvalidSchemaNameError | asyncpg.UndefinedFunctionError):
        return SchemaMissing(NOT_INSTALLED)
    return QueueError(message)


def _with_connection(
    args: argparse.Namespace, work: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    from orchestrator.db import connect, resolve_dsn

    async def run() -> T:
        conn = await connect(resolve_dsn(args.dsn))
        try:
            if not await conn.fetchval("SELECT to_regclass('pgmq.meta') IS NOT NULL"):
                raise SchemaMissing(NOT_INSTALLED)
            return await work(conn)
        except asyncpg.PostgresError as exc:
            raise _error(exc) from None
        finally:
            await conn.close()

    return asyncio.run(run())


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=_json_default, indent=2))


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _kind(row: asyncpg.Record) -> str:
    if row["is_partitioned"]:
        return "partitioned"
    return "unlogged" if row["is_unlogged"] else "plain"


def _list(args: argparse.Namespace) -> int:
    rows = _with_connection(args, lambda c: c.fetch("SELECT * FROM pgmq.list_queues()"))
    if args.json:
        _print_json([dict(r) for r in rows])
    elif not rows:
        print("no queues")
    else:
        width = max(len("QUEUE"), *(len(r["queue_name"]) for r in rows))
        print(f"{'QUEUE':<{width}}  {'KIND':<11}  CREATED")
        for r in rows:
            created = r["created_at"].isoformat(timespec="seconds")
            print(f"{r['queue_name']:<{width}}  {_kind(r):<11}  {created}")
    return 0


async def _exists(conn: asyncpg.Connection, name: str) -> bool:
    found: bool = await conn.fetchval(
        'SELECT EXISTS (SELECT FROM pgmq.meta WHERE queue_name = lower($1 COLLATE "C"))', name
    )
    return found


def _create(args: argparse.Namespace) -> int:
    _checked_name(args)

    async def work(conn: asyncpg.Connection) -> bool:
        existed = await _exists(conn, args.name)
        if args.partitioned:
            await conn.execute(
                "SELECT pgmq.create_partitioned($1, $2, $3)",
                args.name,
                args.partition_interval,
                args.retention_interval,
            )
        elif args.unlogged:
            await conn.execute("SELECT pgmq.create_unlogged($1)", args.name)
        else:
            await conn.execute("SELECT pgmq.create($1)", args.name)
        return existed

    existed = _with_connection(args, work)
    name = args.name.lower()
    print(f"queue {name} already exists" if existed else f"created queue {name}")
    return 0


def _drop(args: argparse.Namespace) -> int:
    _checked_name(args)
    dropped = _with_connection(args, lambda c: c.fetchval("SELECT pgmq.drop_queue($1)", args.name))
    if not dropped:
        raise NotFound(f'queue "{args.name}" does not exist')
    print(f"dropped queue {args.name.lower()}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    _checked_name(args)
    count = _with_connection(args, lambda c: c.fetchval("SELECT pgmq.purge_queue($1)", args.name))
    name = args.name.lower()
    if args.json:
        _print_json({"queue_name": name, "purged": count})
    else:
        print(f"purged {count} message{'' if count == 1 else 's'} from queue {name}")
    return 0


def _metrics(args: argparse.Namespace) -> int:
    _checked_name(args)

    async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        if args.name is None:
            return list(await conn.fetch("SELECT * FROM pgmq.metrics_all()"))
        return list(await conn.fetch("SELECT * FROM pgmq.metrics($1)", args.name))

    rows = _with_connection(args, work)
    if args.json:
        found = [dict(r) for r in rows]
        _print_json(found[0] if args.name is not None else found)
        return 0
    if not rows:
        print("no queues")
        return 0
    width = max(len("QUEUE"), *(len(r["queue_name"]) for r in rows))
    print(f"{'QUEUE':<{width}}  {'LENGTH':>8}  {'VISIBLE':>8}  {'OLDEST_S':>8}  {'TOTAL':>10}")
    for r in rows:
        oldest = "-" if r["oldest_msg_age_sec"] is None else str(r["oldest_msg_age_sec"])
        print(
            f"{r['queue_name']:<{width}}  {r['queue_length']:>8}  "
            f"{r['queue_visible_length']:>8}  {oldest:>8}  {r['total_messages']:>10}"
        )
    return 0
