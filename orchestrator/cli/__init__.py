"""The `orchestrator` command: argument parsing and printing only.

Each command group lives in its own module with a `register(subparsers)` function; every command
calls one function of the layer that owns the work. Errors of the `OrchestratorError` family are
printed as one line (`orchestrator: error: ...`) with their documented exit code; a traceback
only reaches the terminal for a bug, never for an input mistake.

Exit codes: 0 success, 1 failure or invalid input, 2 usage error, 3 database unavailable,
4 database not prepared (run `orchestrator install` / `orchestrator apply`), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from orchestrator.db.dsn import redact
from orchestrator.errors import OrchestratorError, UsageError

# Modules that contribute subcommands, in the order `--help` lists them.
COMMAND_MODULES = [
    "orchestrator.cli.spec_cmd",  # validate, schema
    "orchestrator.cli.compile_cmd",  # plan, apply
    "orchestrator.cli.run_cmd",  # run, send
    "orchestrator.cli.ops_cmd",  # status, dlq, trace, maintain
    "orchestrator.cli.queue_cmd",  # install, queue-level commands
    "orchestrator.cli.db_cmd",  # db start|stop|status|url
    "orchestrator.cli.ui_cmd",  # ui
]


class _Parser(argparse.ArgumentParser):
    usage_exit_code = 2

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(_Parser.usage_exit_code, f"{self.prog}: error: {message}\n")


def add_dsn_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        metavar="URL",
        help="PostgreSQL URL (default: $DATABASE_URL, else the embedded server)",
    )


def add_pipelines_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pipelines",
        metavar="DIR",
        default="pipelines",
        help="folder of pipeline YAML files (default: ./pipelines)",
    )


def one_line(text: str) -> str:
    """`text` with control characters escaped (a newline becomes the two characters \\n)."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def require_path(path: str | Path) -> Path:
    """`path` as a Path; a missing file or folder is a usage error (exit 2)."""
    found = Path(path)
    if not found.exists():
        raise UsageError(f"no such file or directory: {found}")
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="orchestrator",
        description="Postgres-native declarative pipeline orchestrator.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    # `plan --detailed-exitcode` reserves 2 for "changes pending": a usage error is 1 there.
    _Parser.usage_exit_code = 1 if "--detailed-exitcode" in arguments else 2
    args = parser.parse_args(arguments)
    try:
        code = args.func(args)
    except OrchestratorError as exc:
        message = redact(str(exc))
        if not exc.multiline:
            message = one_line(message)
        print(f"orchestrator: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("orchestrator: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
