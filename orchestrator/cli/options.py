"""Options declared once, for every command: where they may stand and where else they come from.

The global options (`--dsn`, `--pipelines`, `--json`, `-v/--verbose`) are accepted before the
command and after it (`orchestrator --dsn URL status` and `orchestrator status --dsn URL`):
the top-level parser holds their defaults, and every command's parser gets the same options
with suppressed defaults, so a value given after the command wins and one given before it
survives. `finish_parser` does that to every command, including commands added later by
their own modules.

Every `--long-option` also reads an environment variable, `ORCHESTRATOR_<NAME>` (`--log-level`:
`ORCHESTRATOR_LOG_LEVEL`), listed in `--help`; the command line wins over the environment.
Options that confirm a destructive action (`--yes`, `--allow-destroy`, `--all`) never come from
the environment: a forgotten variable must not delete anything.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from orchestrator.db.dsn import DSN_VARIABLES
from orchestrator.errors import UsageError

ENV_PREFIX = "ORCHESTRATOR_"
NOT_FROM_ENVIRONMENT = frozenset({"--yes", "--allow-destroy", "--all", "--ids", "--help"})
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
        if any(flag in parser._option_string_actions for flag in option.flags):
            continue
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
    for command in leaf_parsers(parser):
        for action in command._actions:
            if action.dest in GLOBAL_DESTS:
                action.default = argparse.SUPPRESS
        add_global_options(command, top_level=False)
        for action in command._actions:
            name = env_name(action)
            if name is not None:
                action.help = f"{action.help or ''} [env: ${name}]".strip()
                _BASE_DEFAULTS[id(action)] = action.default


_BASE_DEFAULTS: dict[int, Any] = {}
"""The declared default of each option that reads a variable (a parser is built once)."""


def apply_environment(parser: argparse.ArgumentParser) -> None:
    """Set every default from the environment as it is now (the parser is reused)."""
    for action in parser._actions:
        option = next((o for o in GLOBAL_OPTIONS if o.dest == action.dest), None)
        if option is not None and option.dest != "dsn":
            action.default = _from_env(option)
    for command in leaf_parsers(parser):
        for action in command._actions:
            _read_environment(command, action)


def leaf_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parsers of the commands (those without subcommands of their own)."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield parser
        return
    for group in groups:
        for child in dict.fromkeys(group.choices.values()):
            yield from leaf_parsers(child)


def env_name(action: argparse.Action) -> str | None:
    """`ORCHESTRATOR_<NAME>` for a `--long-option` that may come from the environment."""
    longs = [s for s in action.option_strings if s.startswith("--")]
    if not longs or action.dest in GLOBAL_DESTS or longs[0] in NOT_FROM_ENVIRONMENT:
        return None
    if isinstance(action, argparse._HelpAction | argparse._VersionAction):
        return None
    return ENV_PREFIX + longs[0][2:].upper().replace("-", "_")


def _read_environment(parser: argparse.ArgumentParser, action: argparse.Action) -> None:
    name = env_name(action)
    if name is None or id(action) not in _BASE_DEFAULTS:
        return
    value = os.environ.get(name)
    if value is None:
        action.default = _BASE_DEFAULTS[id(action)]
        return
    if isinstance(action, argparse._StoreTrueAction):
        try:
            action.default = _truth(value, name)
        except UsageError as exc:
            parser.error(str(exc))
    elif isinstance(action, argparse._AppendAction):
        action.default = [_convert(parser, action, v.strip(), name) for v in value.split(",")]
    else:
        action.default = _convert(parser, action, value, name)


def _convert(
    parser: argparse.ArgumentParser, action: argparse.Action, value: str, name: str
) -> Any:
    try:
        converted = action.type(value) if callable(action.type) else value
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        parser.error(f"${name}: {exc}")
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(repr, action.choices))
        parser.error(f"${name}: invalid choice {value!r} (choose from {choices})")
    return converted


def _truth(value: str, name: str) -> bool:
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise UsageError(f"${name}: expected 1/0, true/false or yes/no, got {value!r}")
