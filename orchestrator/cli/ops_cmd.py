"""`orchestrator status`, `dlq list|show|replay|purge`, `trace` and `maintain`.

They read the applied pipelines from the database (`orchestrator.pipelines`), so they work on
any host that reaches it, with or without the pipeline files. Data goes to stdout (`--json`
for programs); progress and prompts go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from orchestrator.cli import add_dsn_option, add_pipelines_option
from orchestrator.cli.arguments import duration, positive_duration, positive_int
from orchestrator.errors import OrchestratorError, UsageError

if TYPE_CHECKING:
    import asyncpg

Work = Callable[["asyncpg.Connection"], Awaitable[int]]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `status`, `dlq`, `trace` and `maintain` commands."""
    _register_status(sub)
    _register_dlq(sub)
    _register_trace(sub)
    _register_maintain(sub)


def _common(parser: argparse.ArgumentParser, *, json_output: bool = True) -> None:
    add_dsn_option(parser)
    add_pipelines_option(parser)
    if json_output:
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _run(args: argparse.Namespace, work: Work) -> int:
    """Connect, run `work` with database errors translated to one-line errors, disconnect."""
    import asyncpg

    from orchestrator.cli import privileges_missing
    from orchestrator.db import connect, resolve_dsn
    from orchestrator.ops.queries import translated_errors

    async def main() -> int:
        conn = await connect(resolve_dsn(args.dsn))
        try:
            async with translated_errors():
                try:
                    return await work(conn)
                except asyncpg.InsufficientPrivilegeError as exc:
                    raise privileges_missing(exc) from None
        finally:
            await conn.close()

    return asyncio.run(main())


def _print_json(data: Any) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _colour() -> bool:
    from orchestrator.cli.format import colour_enabled

    return colour_enabled(sys.stdout)


# -- status --------------------------------------------------------------------------------


def _register_status(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser(
        "status",
        help="what every step holds and does right now",
        description=(
            "One table per applied pipeline, a row per step: messages waiting, visible, in "
            "flight, retrying and delayed, the oldest message's age, hand-offs and failures "
            "in the last minute, dead letters, the queue table's size and its share of dead "
            "tuples; then the dead-letter queue and the next schedule ticks."
        ),
    )
    status.add_argument("names", nargs="*", metavar="PIPELINE", help="only these pipelines")
    _common(status)
    status.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=positive_duration,
        metavar="SECONDS",
        help="refresh every SECONDS (default 2) until interrupted",
    )
    status.add_argument(
        "--wide", action="store_true", help="every column, however wide the terminal"
    )
    status.add_argument(
        "--window",
        type=positive_duration,
        default=60.0,
        metavar="DURATION",
        help="period counted as recent for hand-offs and failures (default 1m)",
    )
    status.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    from orchestrator.cli.views import status_text
    from orchestrator.ops.status import collect_status

    hashes = _local_hashes(args.pipelines)
    interactive = sys.stdout.isatty()

    async def show(conn: asyncpg.Connection) -> None:
        report = await collect_status(conn, args.names, window=args.window, local_hashes=hashes)
        if args.json:
            import orjson

            option = 0 if args.watch else orjson.OPT_INDENT_2
            sys.stdout.write(orjson.dumps(report.to_json(), option=option).decode() + "\n")
        else:
            if args.watch and interactive:
                sys.stdout.write("\x1b[H\x1b[2J")
            print(status_text(report, colour=_colour(), width=_width(args.wide)))
            if args.watch and not interactive:
                print()
        sys.stdout.flush()

    async def work(conn: asyncpg.Connection) -> int:
        await show(conn)
        while args.watch:
            await asyncio.sleep(args.watch)
            await show(conn)
        return 0

    try:
        return _run(args, work)
    except KeyboardInterrupt:
        if args.watch:
            return 0  # the way to leave --watch
        raise


def _width(wide: bool) -> int | None:
    """The terminal's width, None (no limit) for --wide or when stdout is not a terminal."""
    if wide or not sys.stdout.isatty():
        return None
    import shutil

    return shutil.get_terminal_size().columns


def _local_hashes(folder: str) -> dict[str, str] | None:
    """Spec hashes of the pipeline files in `folder`, to flag pipelines changed since apply;
    None when there is no such folder (status needs no files)."""
    from pathlib import Path

    if not Path(folder).is_dir():
        return None
    from orchestrator.spec import load_pipelines

    try:
        result = load_pipelines(folder)
    except OrchestratorError:
        return None
    return {p.name: p.spec_hash() for p in result.pipelines}


# -- dlq -----------------------------------------------------------------------------------


def _register_dlq(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = sub.add_parser(
        "dlq",
        help="list, show, replay or purge dead letters",
        description="Dead letters: messages whose attempts ran out or that failed permanently.",
    )
    commands = dlq.add_subparsers(dest="dlq_command", metavar="COMMAND")
    commands.required = True

    listing = commands.add_parser("list", help="list a pipeline's dead letters, newest first")
    listing.add_argument("pipeline", metavar="PIPELINE")
    _filters(listing)
    listing.add_argument(
        "--since", type=duration, metavar="DURATION", help="only those from the last DURATION"
    )
    listing.add_argument(
        "--limit", type=positive_int, default=50, metavar="N", help="show at most N (default 50)"
    )
    _common(listing)
    listing.set_defaults(func=_dlq_list)

    show = commands.add_parser("show", help="one dead letter in full: error, traceback, payload")
    show.add_argument(
        "first", metavar="[PIPELINE]", help="the pipeline (optional: ids are looked up in all)"
    )
    show.add_argument("second", nargs="?", metavar="ID", help="the dead letter's id")
    show.add_argument("--pipeline", metavar="PIPELINE", help="the pipeline of the dead letter")
    _common(show)
    show.set_defaults(func=_dlq_show)

    replay = commands.add_parser(
        "replay",
        help="send dead letters back to the step they failed in",
        description=(
            "Send dead letters back to the queue of the step they failed in, as new messages "
            "with their original payload and headers (attempts start again). Each batch "
            "removes the dead letters and enqueues them in one transaction, so repeating a "
            "replay never sends a dead letter twice."
        ),
    )
    replay.add_argument("pipeline", metavar="PIPELINE")
    _filters(replay)
    replay.add_argument(
        "--ids", nargs="+", metavar="ID", help="these dead letters (12 13, 12,13 or 12-20)"
    )
    replay.add_argument("--all", action="store_true", help="every dead letter of the pipeline")
    _common(replay)
    replay.set_defaults(func=_dlq_replay)

    purge = commands.add_parser(
        "purge",
        help="delete dead letters for good",
        description="Delete dead letters. Asks first on a terminal; elsewhere needs --yes.",
    )
    purge.add_argument("pipeline", metavar="PIPELINE")
    purge.add_argument("--step", metavar="STEP", help="only dead letters of this step")
    purge.add_argument(
        "--before",
        type=duration,
        metavar="DURATION",
        help="only those older than DURATION (e.g. 7d)",
    )
    purge.add_argument("--yes", "-y", action="store_true", help="do not ask")
    _common(purge)
    purge.set_defaults(func=_dlq_purge)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--step", metavar="STEP", help="only dead letters of this step")
    parser.add_argument(
        "--error", metavar="TEXT", help="only those whose error type or message contains TEXT"
    )


def _dlq_list(args: argparse.Namespace) -> int:
    from orchestrator.cli.views import dead_letters_text
    from orchestrator.ops.dlq import Filter, count_dead_letters, list_dead_letters
    from orchestrator.state import applied_pipeline

    where = Filter(step=args.step, error=args.error, since=args.since)

    async def work(conn: asyncpg.Connection) -> int:
        letters = await list_dead_letters(conn, args.pipeline, where, limit=args.limit)
        total = await count_dead_letters(conn, await applied_pipeline(conn, args.pipeline), where)
        if args.json:
            _print_json(
                {
                    "pipeline": args.pipeline,
                    "total": total,
                    "dead_letters": [d.to_json(full=False) for d in letters],
                }
            )
        else:
            print(dead_letters_text(args.pipeline, letters, total=total))
        return 0

    return _run(args, work)


def _dlq_show(args: argparse.Namespace) -> int:
    from orchestrator.cli.views import dead_letter_text
    from orchestrator.ops.dlq import get_dead_letter, parse_id

    pipeline = args.first if args.second is not None else args.pipeline
    if args.second is not None and args.pipeline and args.pipeline != pipeline:
        raise UsageError(f"two pipelines given: {pipeline} and --pipeline {args.pipeline}")
    dead_letter_id = parse_id(args.second if args.second is not None else args.first)

    async def work(conn: asyncpg.Connection) -> int:
        letter = await get_dead_letter(conn, dead_letter_id, pipeline)
        if args.json:
            _print_json(letter.to_json())
        else:
            print(dead_letter_text(letter))
        return 0

    return _run(args, work)


def _dlq_replay(args: argparse.Namespace) -> int:
    from orchestrator.cli.progress import Progress
    from orchestrator.cli.views import replay_text
    from orchestrator.ops.dlq import Filter, parse_ids, replay_dead_letters

    ids = parse_ids(args.ids) if args.ids else None
    if args.all and (ids or args.step or args.error):
        raise UsageError("--all replays everything: leave out --ids, --step and --error")
    where = Filter(step=args.step, error=args.error, ids=ids)
    progress = Progress("replay")

    def total(n: int) -> None:
        progress.total = n

    async def work(conn: asyncpg.Connection) -> int:
        with progress:
            report = await replay_dead_letters(
                conn,
                args.pipeline,
                where,
                everything=args.all,
                on_batch=progress.advance,
                on_total=total,
            )
        if args.json:
            _print_json(report.to_json())
        else:
            print(replay_text(report))
        return 1 if report.missing_ids else 0

    return _run(args, work)


def _dlq_purge(args: argparse.Namespace) -> int:
    from orchestrator.cli.format import count
    from orchestrator.cli.progress import Progress
    from orchestrator.ops.dlq import Filter, count_dead_letters, purge_dead_letters
    from orchestrator.spec.durations import format_duration
    from orchestrator.state import applied_pipeline

    ask = not args.yes
    if ask and not sys.stdin.isatty():
        raise UsageError("dlq purge deletes for good: pass --yes (no terminal to ask on)")
    where = Filter(step=args.step, before=args.before)

    async def work(conn: asyncpg.Connection) -> int:
        pipeline = await applied_pipeline(conn, args.pipeline)
        matching = await count_dead_letters(conn, pipeline, where)
        if ask:
            if matching == 0:
                print(f"no dead letters to purge in {pipeline.name}")
                return 0
            scope = f" of step {args.step}" if args.step else ""
            age = f" older than {format_duration(args.before)}" if args.before else ""
            question = f"delete {count(matching, 'dead letter')}{scope}{age} of {pipeline.name}?"
            if not _confirm(question):
                print("nothing deleted", file=sys.stderr)
                return 1
        with Progress("purge", total=matching) as progress:
            deleted = await purge_dead_letters(
                conn, pipeline.name, where, on_batch=progress.advance
            )
        if args.json:
            _print_json({"pipeline": pipeline.name, "purged": deleted})
        else:
            print(f"purged {count(deleted, 'dead letter')} of {pipeline.name}")
        return 0

    return _run(args, work)


def _confirm(question: str) -> bool:
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


# -- trace ---------------------------------------------------------------------------------


def _register_trace(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trace = sub.add_parser(
        "trace",
        help="one run's timeline across its steps",
        description=(
            "Every message of a run in time order: when it was sent, started and finished, "
            "how many attempts it took, its errors, and where it is now (waiting, in flight, "
            "retrying, delayed, done or dead letter); joins still waiting for predecessors."
        ),
    )
    trace.add_argument("run_id", metavar="RUN_ID", help="the run id (a UUID)")
    trace.add_argument(
        "--pipeline", action="append", metavar="PIPELINE", help="search only this pipeline"
    )
    _common(trace)
    trace.set_defaults(func=_trace)


def _trace(args: argparse.Namespace) -> int:
    from orchestrator.cli.views import trace_text
    from orchestrator.ops.trace import parse_run_id, trace_run

    run_id = parse_run_id(args.run_id)  # a malformed id fails before connecting

    async def work(conn: asyncpg.Connection) -> int:
        found = await trace_run(conn, run_id, args.pipeline)
        if args.json:
            _print_json(found.to_json())
        else:
            print(trace_text(found, colour=_colour()))
        return 0

    return _run(args, work)


# -- maintain ------------------------------------------------------------------------------


def _register_maintain(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    maintain = sub.add_parser(
        "maintain",
        help="partition upkeep, archive retention and join cleanup",
        description=(
            "Create partitions ahead and drop those past retention, delete archived messages "
            "older than each pipeline's queues.archive.retention, and delete join state "
            "completed long ago. Workers do this on their own; this runs it now."
        ),
    )
    _common(maintain)
    maintain.set_defaults(func=_maintain)


def _maintain(args: argparse.Namespace) -> int:
    from orchestrator.cli.views import maintain_text
    from orchestrator.ops.maintain import maintain_all

    async def work(conn: asyncpg.Connection) -> int:
        report = await maintain_all(conn)
        if args.json:
            _print_json(report.to_json())
        else:
            print(maintain_text(report))
        return 1 if report.problems else 0

    return _run(args, work)
