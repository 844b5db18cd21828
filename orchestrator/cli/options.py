"""Options declared once, for every command: where they may stand and where else they come from.

The global options (`--dsn`, `--pipelines`, `--json`, `-v/--verbose`) are accepted before the
command and after it (`orchestrator --dsn URL status` and `orchestrator status --dsn URL`):
the top-level parser holds their defaults, and every command's parser gets the same options
with suppressed defaults, so a value given after the command wins and one given before it
survives. `finish_parser` does that to every command, including commands added later by
their own modules.

Every other `--long-option` reads an environment variable named after its command and itself,
`ORCHESTRATOR_<COMMAND>_<OPTION>` (`run --log-level`: `ORCHESTRATOR_RUN_LOG_LEVEL`; `dlq list
--limit`: `ORCHESTRATOR_DLQ_LIST_LIMIT`), listed in `--help`; the command line wins over the
environment. A bad value is an error only for the command that has the option.
Options that confirm a destructive action (`--yes`, `--allow-destroy`, `--all`, and apply's
`--allow-incompatible` and `--to-dead-letter`) never come from the environment: a forgotten
variable must not delete anything.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.db.dsn import DSN_VARIABLES
from orchestrator.errors import UsageError

ENV_PREFIX = "ORCHESTRATOR_"
NOT_FROM_ENVIRONMENT = frozenset(
    {
        "--yes",
        "--allow-destroy",
        "--allow-incompatible",
        "--to-dead-letter",
        "--all",
        "--ids",
        "--help",
    }
)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class GlobalOption:
    flags: tuple[str, ...]
    dest: str
    help: str
    metavar: str | None = None
    action: str = "store"
    default: Any = None
    env: tuple[str, ...] = ()


GLOBAL_OPTIONS = (
    GlobalOption(
        ("--dsn",),
        "dsn",
        "PostgreSQL URL or key=value string (default: the project's embedded server)",
        metavar="DSN",
        env=DSN_VARIABLES,
    ),
    GlobalOption(
        ("--pipelines",),
        "pipelines",
        "folder of pipeline YAML files (default: pipelines)",
        metavar="DIR",
        default="pipelines",
        env=("ORCHESTRATOR_PIPELINES",),
    ),
    GlobalOption(
        ("--json",),
        "json",
        "print JSON for programs",
        action="store_true",
        default=False,
        env=("ORCHESTRATOR_JSON",),
    ),
    GlobalOption(
        ("-v", "--verbose"),
        "verbose",
        "say more on stderr (-vv: debug)",
        action="count",
        default=0,
        env=("ORCHESTRATOR_VERBOSE",),
    ),
)
GLOBAL_DESTS = frozenset(o.dest for o in GLOBAL_OPTIONS)


def add_global_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """The global options on `parser`: with their defaults at the top level, suppressed on a
    command (so that a value given before the command is kept). Skips those already there."""
    for option in GLOBAL_OPTIONS:
        add_global_option(parser, option.dest, top_level=top_level)


def add_global_option(parser: argparse.ArgumentParser, dest: str, *, top_level: bool) -> None:
    """One global option (by `dest`) on `parser`, unless it is there already."""
    option = next(o for o in GLOBAL_OPTIONS if o.dest == dest)
    if any(flag in parser._option_string_actions for flag in option.flags):
        return
    kwargs: dict[str, Any] = {"dest": option.dest, "action": option.action}
    if option.metavar:
        kwargs["metavar"] = option.metavar
    env = " or ".join(f"${name}" for name in option.env)
    kwargs["help"] = f"{option.help} [env: {env}]" if env else option.help
    if top_level:
        kwargs["default"] = _from_env(option) if option.dest != "dsn" else None
    else:
        kwargs["default"] = argparse.SUPPRESS
    parser.add_argument(*option.flags, **kwargs)


def _from_env(option: GlobalOption) -> Any:
    value = next((os.environ[name] for name in option.env if name in os.environ), None)
    if value is None:
        return option.default
    if option.action == "store_true":
        return _truth(value, option.env[0])
    if option.action == "count":
        return int(value) if value.isdigit() else int(_truth(value, option.env[0]))
    return value


def finish_parser(parser: argparse.ArgumentParser) -> None:
    """Give every command the global options, and every other `--option` its variable (named
    in its help; read by `apply_environment`)."""
    for path, command in leaf_parsers(parser):
        for action in command._actions:
            if action.dest in GLOBAL_DESTS:
                action.default = argparse.SUPPRESS
        add_global_options(command, top_level=False)
        for action in command._actions:
            name = env_name(path, action)
            if name is not None:
                action.help = f"{action.help or ''} [env: ${name}]".strip()
                _VARIABLES[id(action)] = (name, action.default)


_VARIABLES: dict[int, tuple[str, Any]] = {}
"""Per option that reads a variable: its name and the declared default (the parser is built
once per process, the environment is read at every parse)."""


class EnvironmentValueError:
    """The default of an option whose variable holds a bad value: an error only when the
    command that has the option runs (see `environment_errors`)."""

    def __init__(self, message: str) -> None:
        self.message = message


def apply_environment(parser: argparse.ArgumentParser) -> None:
    """Set every default from the environment as it is now."""
    for action in parser._actions:
        option = next((o for o in GLOBAL_OPTIONS if o.dest == action.dest), None)
        if option is not None and option.dest != "dsn":
            action.default = _from_env(option)
    for _, command in leaf_parsers(parser):
        for action in command._actions:
            if id(action) in _VARIABLES:
                action.default = _environment_default(action, *_VARIABLES[id(action)])


def environment_errors(args: argparse.Namespace) -> list[str]:
    """The bad variables of the command that was parsed."""
    return [v.message for v in vars(args).values() if isinstance(v, EnvironmentValueError)]


def leaf_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """The parsers of the commands (those without subcommands of their own), with the words
    that name them (`("dlq", "list")`)."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield path, parser
        return
    for group in groups:
        named = {id(child): (name, child) for name, child in reversed(group.choices.items())}
        for name, child in named.values():
            yield from leaf_parsers(child, (*path, name))


def env_name(path: Sequence[str], action: argparse.Action) -> str | None:
    """`ORCHESTRATOR_<COMMAND>_<OPTION>` (`ORCHESTRATOR_RUN_WORKERS`) for a `--long-option`
    of a command that may come from the environment; None for the others."""
    longs = [s for s in action.option_strings if s.startswith("--")]
    if not longs or action.dest in GLOBAL_DESTS or longs[0] in NOT_FROM_ENVIRONMENT:
        return None
    if isinstance(action, argparse._HelpAction | argparse._VersionAction):
        return None
    words = [*path, longs[0][2:]]
    return ENV_PREFIX + "_".join(words).upper().replace("-", "_")


def _environment_default(action: argparse.Action, name: str, declared: Any) -> Any:
    value = os.environ.get(name)
    if value is None:
        return declared
    try:
        if isinstance(action, argparse._StoreTrueAction):
            return _truth(value, name)
        if isinstance(action, argparse._AppendAction):
            return [_convert(action, v.strip(), name) for v in value.split(",")]
        return _convert(action, value, name)
    except UsageError as exc:
        return EnvironmentValueError(str(exc))


def _convert(action: argparse.Action, value: str, name: str) -> Any:
    try:
        converted = action.type(value) if callable(action.type) else value
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        raise UsageError(f"${name}: {exc}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(repr, action.choices))
        raise UsageError(f"${name}: invalid choice {value!r} (choose from {choices})")
    return converted


def _truth(value: str, name: str) -> bool:
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise UsageError(f"${name}: expected 1/0, true/false or yes/no, got {value!r}")
