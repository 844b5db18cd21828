"""The `orchestrator` command: argument parsing and printing only.

Each command group lives in its own module with a `register(subparsers)` function; every command
calls one function of the layer that owns the work. The global options and the environment
variables of every option are declared once, in `cli/options.py`. Errors of the
`OrchestratorError` family are printed as one line (`orchestrator: error: ...`) with their
documented exit code; a traceback only reaches the terminal for a bug, never for an input
mistake. Whatever the CLI writes passes through `Scrubbed`: a password found in the command
line or in the DSN variables never reaches the screen, however it came to be quoted. A closed
pipe (`orchestrator status | head -1`) ends the command quietly with exit 141, as Unix tools do.

Exit codes: 0 success, 1 failure or invalid input, 2 usage error, 3 database unavailable,
4 database not prepared (run `orchestrator install` / `orchestrator apply`), 130 interrupted,
141 output pipe closed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import IO, Any

from orchestrator.cli.options import (
    add_global_option,
    add_global_options,
    apply_environment,
    environment_errors,
    finish_parser,
)
from orchestrator.cli.output import Scrubbed, secrets_of
from orchestrator.db.dsn import redact
from orchestrator.errors import OrchestratorError, UsageError

# Modules that contribute subcommands, in the order `--help` lists them.
COMMAND_MODULES = [
    "orchestrator.cli.init_cmd",  # init
    "orchestrator.cli.spec_cmd",  # validate, schema, graph
    "orchestrator.cli.compile_cmd",  # plan, apply
    "orchestrator.cli.run_cmd",  # run, send
    "orchestrator.cli.flow_cmd",  # pause, resume, cancel, send --key
    "orchestrator.cli.ops_cmd",  # status, dlq, trace, maintain
    "orchestrator.cli.queue_cmd",  # install, queue-level commands
    "orchestrator.cli.db_cmd",  # db start|stop|status|url
    "orchestrator.cli.completion_cmd",  # completion bash|zsh
]
BROKEN_PIPE = 141
_INVALID_CHOICE = re.compile(r"argument (\S+): invalid choice: '(.*)' \(choose from (.*)\)$", re.S)


class _Parser(argparse.ArgumentParser):
    usage_exit_code = 2

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(_Parser.usage_exit_code, f"{self.prog}: error: {_usage_message(message)}\n")


def _usage_message(message: str) -> str:
    """argparse's message, with 'did you mean' for an unknown command, never echoing a DSN."""
    found = _INVALID_CHOICE.match(message)
    if found is None:
        return redact(message)
    what, word, choices = found.groups()
    names = [c.strip().strip("'") for c in choices.split(",")]
    noun = "command" if what in ("COMMAND", "ACTION") else f"value for {what}"
    if "://" in word or "=" in word:
        return f"unknown {noun}: it looks like a database DSN; pass it as --dsn DSN"
    from orchestrator.spec.suggest import did_you_mean

    # The word is repeated only when it is close to a known one: a word that is nothing like a
    # command may be something pasted in the wrong place, a password say.
    hint = did_you_mean(word, names)
    said = f" '{word}'{hint}" if hint else ""
    return f"unknown {noun}{said}; choose from {', '.join(names)}"


def add_dsn_option(parser: argparse.ArgumentParser) -> None:
    """`--dsn` on a command (every command has it anyway; kept for the modules that say so)."""
    add_global_option(parser, "dsn", top_level=False)


def add_pipelines_option(parser: argparse.ArgumentParser) -> None:
    """`--pipelines` on a command (every command has it anyway)."""
    add_global_option(parser, "pipelines", top_level=False)


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


class _Version(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help=kwargs.get("help"))

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, *_: Any) -> None:
        from orchestrator.cli.version import version_lines

        for line in version_lines(getattr(namespace, "dsn", None)):
            print(line)
        parser.exit(0)


@cache
def build_parser() -> argparse.ArgumentParser:
    """The whole parser, built once per process (`apply_environment` runs per parse)."""
    parser = _Parser(
        prog="orchestrator",
        description="Postgres-native declarative pipeline orchestrator.",
        epilog=(
            "Global options go before or after the command. Every other --option reads "
            "ORCHESTRATOR_<COMMAND>_<OPTION> from the environment (shown as [env: ...] in each "
            "command's --help); the command line wins. Exit codes: 0 ok, 1 failed, 2 usage, "
            "3 database unavailable, 4 database not prepared, 130 interrupted."
        ),
    )
    add_global_options(parser, top_level=True)
    parser.add_argument(
        "--version",
        action=_Version,
        help="print the version (and the database's queue-layer and store versions)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    finish_parser(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    secrets = secrets_of(arguments, os.environ)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Scrubbed(sys.stdout, secrets), Scrubbed(sys.stderr, secrets)
    try:
        return _main(arguments)
    except BrokenPipeError:
        _silence_stdout(saved[0])
        return BROKEN_PIPE
    finally:
        sys.stdout, sys.stderr = saved


def _main(arguments: list[str]) -> int:
    # `plan --detailed-exitcode` reserves 2 for "changes pending": a usage error is 1 there.
    _Parser.usage_exit_code = 1 if "--detailed-exitcode" in arguments else 2
    try:
        parser = build_parser()
        apply_environment(parser)
        args = parser.parse_args(arguments)
        for problem in environment_errors(args):
            parser.error(problem)
        _configure_logging(args.verbose)
        code = args.func(args)
    except OrchestratorError as exc:
        return _report(exc)
    except KeyboardInterrupt:
        print("orchestrator: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        translated = _database_error(exc)
        if translated is None:
            raise
        return _report(translated)
    return int(code or 0)


def _report(exc: OrchestratorError) -> int:
    message = redact(str(exc))
    if not exc.multiline:
        message = one_line(message)
    print(f"orchestrator: error: {message}", file=sys.stderr)
    return exc.exit_code


def _database_error(exc: Exception) -> OrchestratorError | None:
    """A database error no layer translated, as one line with a hint where one helps."""
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is None or not isinstance(exc, asyncpg.PostgresError):
        return None
    if getattr(exc, "sqlstate", None) == "42501":
        return privileges_missing(exc)
    return OrchestratorError(f"database error: {_first_line(exc)}")


def privileges_missing(exc: BaseException) -> OrchestratorError:
    """'permission denied for ...' with what to do about it."""
    return OrchestratorError(
        f"{_first_line(exc)}: this role lacks grants; the pipelines' owner gives them with "
        "`orchestrator apply --grant ROLE`"
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]


def _configure_logging(verbose: int) -> None:
    if verbose:
        import logging

        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            stream=sys.stderr,
            format="orchestrator: %(levelname)s %(name)s: %(message)s",
        )


def _silence_stdout(stdout: IO[str]) -> None:
    """After a closed pipe, point stdout at /dev/null so the exit flush says nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
