"""`orchestrator pause|resume PIPELINE[.STEP]`, `orchestrator cancel RUN_ID...` and the
`--key` option of `orchestrator send` (deduplicated starts).

Each calls one function of the runtime's API (`orchestrator.runtime.control`,
`orchestrator.runtime.api.start_keyed`) and prints one line per target. `send --key` is added
to the parser of `send` (registered before this module) and handled here; without `--key`,
`send` works as before.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from orchestrator.cli import add_dsn_option
from orchestrator.cli.arguments import positive_duration
from orchestrator.errors import NotFound, UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `pause`, `resume` and `cancel`, and `--key` to `send`."""
    for name, verb in (("pause", "stop reading"), ("resume", "read again")):
        parser = sub.add_parser(
            name,
            help=f"make workers {verb} a pipeline or one of its steps",
            description=(
                f"Make every worker {verb} PIPELINE (all its steps) or PIPELINE.STEP within a "
                "second. A pause is kept in the database: it survives worker restarts. Handlers "
                "at work when a step is paused finish; its messages wait."
            ),
        )
        add_dsn_option(parser)
        parser.add_argument("targets", nargs="+", metavar="PIPELINE[.STEP]")
        parser.set_defaults(func=_pause if name == "pause" else _resume)
    cancel = sub.add_parser(
        "cancel",
        help="cancel runs",
        description=(
            "Cancel runs: no handler of a run starts after its cancel committed, on any "
            "worker. A cancel waits for the handlers of the run already at work, then "
            "removes what they sent and the run's waiting, delayed and retrying messages; "
            "its joins never fire. Each run is cancelled in a transaction of its own. A run "
            "that has finished is left as it is."
        ),
    )
    add_dsn_option(cancel)
    cancel.add_argument(
        "--wait",
        type=positive_duration,
        metavar="DURATION",
        help="longest wait for handlers of a run at work (default 30s); then that run is "
        "not cancelled",
    )
    cancel.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    cancel.set_defaults(func=_cancel)
    _extend_send(sub)


def _pause(args: argparse.Namespace) -> int:
    from orchestrator.runtime.control import pause

    return _each(args, pause, "paused", "was paused already")


def _resume(args: argparse.Namespace) -> int:
    from orchestrator.runtime.control import resume

    return _each(args, resume, "resumed", "was not paused")


def _each(args: argparse.Namespace, act: Callable[..., Any], done: str, idle: str) -> int:
    from orchestrator.db import resolve_dsn

    dsn = resolve_dsn(args.dsn)

    async def all_targets() -> None:
        for target in args.targets:
            changed = await act(target, dsn=dsn)
            print(f"{done} {target}" if changed else f"{target} {idle}")

    asyncio.run(all_targets())
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from orchestrator.db import resolve_dsn
    from orchestrator.runtime.control import CANCEL_WAIT, CancelOutcome, cancel

    dsn = resolve_dsn(args.dsn)

    async def all_runs() -> list[CancelOutcome]:
        outcomes = []
        for run_id in args.run_ids:  # each in a transaction of its own, said as it commits
            outcome = await cancel(run_id, dsn=dsn, wait=args.wait or CANCEL_WAIT)
            if outcome.state != "unknown":
                print(_describe(outcome), flush=True)
            outcomes.append(outcome)
        return outcomes

    outcomes = asyncio.run(all_runs())
    unknown = [o for o in outcomes if o.state == "unknown"]
    if unknown:
        names = ", ".join(str(o.run_id) for o in unknown)
        raise NotFound(f"no run {names} in any applied pipeline")
    return 0


def _describe(outcome: Any) -> str:
    run = f"{outcome.run_id} ({outcome.pipeline})"
    if outcome.state == "cancelled":
        in_flight = (
            f"; {outcome.in_flight} read by a worker will not start" if outcome.in_flight else ""
        )
        return f"cancelled {run}: {outcome.removed} waiting message(s) removed{in_flight}"
    if outcome.state == "finished":
        return f"{run} has finished; nothing changed"
    return f"{run} was cancelled already"


# -- send --key ---------------------------------------------------------------------------------


def _extend_send(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = sub.choices.get("send")
    if send is None:
        return
    send.add_argument(
        "--key",
        metavar="KEY",
        help=(
            "deduplication key: while the run started with this key is not finished (or "
            "within the pipeline's dedupe_window), print its id and send nothing"
        ),
    )
    plain = send.get_default("func")
    send.set_defaults(func=lambda args: _send_keyed(args) if args.key is not None else plain(args))


def _send_keyed(args: argparse.Namespace) -> int:
    from orchestrator.cli.run_cmd import _parse_one, _read_input
    from orchestrator.db import resolve_dsn
    from orchestrator.runtime.api import start_keyed

    if args.file is not None or args.payload is None:
        raise UsageError("--key takes one payload (JSON or -), not --file")
    text = _read_input("-") if args.payload == "-" else args.payload.encode()
    payload = _parse_one(text, "stdin" if args.payload == "-" else "payload")
    dsn = resolve_dsn(args.dsn)
    [started] = asyncio.run(
        start_keyed(args.pipeline, [payload], [args.key], dsn=dsn, delay=args.delay)
    )
    if args.json:
        print(f'["{started.run_id}"]')
    else:
        print(started.run_id)
    if started.duplicate:
        print(
            f"orchestrator: duplicate: run {started.run_id} holds key {args.key!r}; nothing sent",
            file=sys.stderr,
        )
    return 0
