"""`orchestrator plan` and `orchestrator apply`: provision the pipelines in PostgreSQL.

plan prints what apply would change, in words (``--sql``: and the SQL; ``--json``: as JSON).
With ``--detailed-exitcode`` it exits 0 when there is nothing to do, 2 when changes are
pending and 1 on any error. apply installs the queue layer and schema orchestrator, then
applies the plan in one transaction. Invalid pipeline files are reported like `validate` does
(``file:LINE:COL: error: message`` on stderr) and exit 1; nothing is planned or applied.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from orchestrator.cli import add_dsn_option, add_pipelines_option, require_path
from orchestrator.db.dsn import redact
from orchestrator.errors import ConfigError, OrchestratorError

if TYPE_CHECKING:
    import asyncpg

    from orchestrator.compiler import Plan
    from orchestrator.compiler.applier import ApplyResult, RemovedSteps
    from orchestrator.spec import Pipeline

_T = TypeVar("_T")


class _InvalidFiles(Exception):
    """The pipeline files have errors; their diagnostics were printed already."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `plan` and `apply` commands."""
    plan = sub.add_parser(
        "plan",
        help="show what apply would change in the database",
        description=(
            "Compare the pipeline files with the database and print what apply would change: "
            "queues to create, convert, alter or drop, changes made by hand (drift), and "
            "changes that would lose messages (destructive). Writes nothing."
        ),
    )
    add_dsn_option(plan)
    add_pipelines_option(plan)
    plan.add_argument("--sql", action="store_true", help="also print the SQL apply would run")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when there is nothing to do, 2 when changes are pending, 1 on error",
    )
    plan.set_defaults(func=_plan)

    apply = sub.add_parser(
        "apply",
        help="create or update the pipelines' queues and metadata in the database",
        description=(
            "Install or upgrade the queue layer and schema orchestrator, then apply the plan in "
            "one transaction under an advisory lock. Changes that would lose messages are "
            "refused unless --allow-destroy is given; on a terminal they are confirmed first."
        ),
    )
    add_dsn_option(apply)
    add_pipelines_option(apply)
    apply.add_argument("--yes", action="store_true", help="do not ask before destructive changes")
    apply.add_argument(
        "--allow-destroy",
        action="store_true",
        help="allow dropping or converting queues that hold messages",
    )
    apply.add_argument("--json", action="store_true", help="print what was done as JSON")
    removed = apply.add_mutually_exclusive_group()
    removed.add_argument(
        "--to-dead-letter",
        action="store_true",
        help="move the messages of removed steps to the dead-letter queue (StepRemoved)",
    )
    removed.add_argument(
        "--drain-first",
        action="store_true",
        help="keep the queue of a removed step while it holds messages; a later apply drops it",
    )
    apply.add_argument(
        "--allow-incompatible",
        action="store_true",
        help="apply input contracts that messages already waiting do not satisfy",
    )
    apply.add_argument(
        "--grant",
        metavar="ROLE",
        help="grant an existing role what `orchestrator run` needs (and no more)",
    )
    apply.set_defaults(func=_apply)


def _plan(args: argparse.Namespace) -> int:
    try:
        pipelines = _load(args.pipelines)
        the_plan = asyncio.run(_with_connection(args.dsn, lambda conn: _make_plan(conn, pipelines)))
    except _InvalidFiles:
        return 1
    except OrchestratorError as exc:
        if not args.detailed_exitcode:
            raise
        print(f"orchestrator: error: {redact(str(exc))}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(the_plan.to_json(), indent=2))
    else:
        _print_plan(the_plan, len(pipelines), sql=args.sql)
    if args.detailed_exitcode:
        return 0 if the_plan.empty else 2
    return 0


def _print_plan(the_plan: Plan, pipelines: int, *, sql: bool) -> None:
    if the_plan.empty:
        noun = "pipeline" if pipelines == 1 else "pipelines"
        print(f"No changes: the database matches {pipelines} {noun}.")
        return
    print(f"Plan: {the_plan.summary()}")
    for line in the_plan.lines():
        print(f"  {line}")
    if the_plan.destructive:
        print("Destructive changes lose the data named above; apply needs --allow-destroy.")
    if sql:
        print()
        print(the_plan.sql())


def _apply(args: argparse.Namespace) -> int:
    try:
        pipelines = _load(args.pipelines)
    except _InvalidFiles:
        return 1
    result = asyncio.run(_with_connection(args.dsn, lambda conn: _run_apply(conn, pipelines, args)))
    if result is None:
        print("Apply cancelled; nothing was changed.")
        return 1
    if args.json:
        grant = result.grant.message() if result.grant is not None else None
        print(json.dumps({"plan": result.plan.to_json(), "grant": grant}, indent=2))
    else:
        for line in result.lines():
            print(line)
    return 0


async def _run_apply(
    conn: asyncpg.Connection, pipelines: list[Pipeline], args: argparse.Namespace
) -> ApplyResult | None:
    """What apply did; None when the user declined the destructive changes."""
    from orchestrator.compiler import apply, plan

    allow: bool | frozenset[str] = bool(args.allow_destroy)
    if args.allow_destroy and not args.yes:
        preview = await plan(conn, pipelines)
        if preview.destructive:
            if not _interactive():
                raise ConfigError(
                    "the plan has destructive changes ("
                    + "; ".join(f"{c.subject} {c.losses()}" for c in preview.destructive)
                    + "); pass --yes to apply them without a terminal"
                )
            if not _confirm(preview):
                return None
            allow = frozenset(c.subject for c in preview.destructive)
    return await apply(
        conn,
        pipelines,
        allow_destroy=allow,
        grant=args.grant,
        removed_steps=_removed_steps(args),
        allow_incompatible=args.allow_incompatible,
    )


def _removed_steps(args: argparse.Namespace) -> RemovedSteps:
    """What apply does with the messages of removed steps: --to-dead-letter (never from the
    environment) wins over --drain-first ($ORCHESTRATOR_APPLY_DRAIN_FIRST included)."""
    if args.to_dead_letter:
        return "dead_letter"
    return "drain" if args.drain_first else "refuse"


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _confirm(preview: Plan) -> bool:
    print(f"Plan: {preview.summary()}")
    for line in preview.lines():
        print(f"  {line}")
    answer = input("These changes delete the data named above. Apply them? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _load(path: str) -> list[Pipeline]:
    """The pipelines under `path`; prints every diagnostic and raises when any file is bad."""
    from orchestrator.spec import load_pipelines

    result = load_pipelines(require_path(path))
    if not result.ok:
        for diagnostic in result.diagnostics:
            print(diagnostic.format(), file=sys.stderr)
        raise _InvalidFiles
    return result.pipelines


async def _make_plan(conn: asyncpg.Connection, pipelines: list[Pipeline]) -> Plan:
    from orchestrator.compiler import plan

    return await plan(conn, pipelines)


async def _with_connection(
    dsn: str | None, work: Callable[[asyncpg.Connection], Awaitable[_T]]
) -> _T:
    from orchestrator.db import connect, resolve_dsn

    conn = await connect(resolve_dsn(dsn))
    try:
        return await work(conn)
    finally:
        await conn.close()
