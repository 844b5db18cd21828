"""DDL from jinja2 templates, with every interpolated value quoted by a filter.

Templates (``templates/*.sql.j2``) run in a sandboxed environment with `StrictUndefined`, so a
misspelt variable is an error rather than an empty string. Every ``{{ ... }}`` must end in one
of the quoting filters below; the environment's ``finalize`` hook refuses anything else, so a
raw value can never reach the SQL text:

- ``literal``: a value as a SQL literal (text, number, boolean, NULL);
- ``jsonb``: a JSON document as a ``'...'::jsonb`` literal;
- ``ident``: an identifier, validated against `IDENTIFIER_PATTERN`, double-quoted;
- ``queue``: a queue name, validated against the naming rules, as a literal;
- ``queue_table``: a queue's table (``pgmq."q_<name>"``; ``prefix='a'`` for its archive).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import cache, wraps
from typing import Any

import orjson
from jinja2 import PackageLoader, StrictUndefined, Undefined
from jinja2.sandbox import SandboxedEnvironment

from orchestrator.errors import ConfigError
from orchestrator.spec import naming

IDENTIFIER_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
"""Identifiers the compiler writes: lower-case ASCII, at most 63 characters."""

_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_QUEUE_TABLE_PREFIXES = ("q", "a")


class UnsafeName(ConfigError):
    """A name that does not follow the naming rules was about to reach SQL."""


class UnquotedValue(TypeError):
    """A template printed a value without passing it through a quoting filter."""


class Sql(str):
    """Text safe to place in a SQL statement: a quoted literal or identifier."""

    __slots__ = ()


def quote_literal(value: object) -> Sql:
    """`value` as a SQL literal: NULL, true/false, a number, or a single-quoted string."""
    if value is None:
        return Sql("NULL")
    if isinstance(value, bool):
        return Sql("true" if value else "false")
    if isinstance(value, int):
        return Sql(str(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} as a SQL literal")
        return Sql(repr(value))
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("a SQL literal cannot contain a NUL character")
        quoted = "'" + value.replace("'", "''") + "'"
        if "\\" in value:
            # E'' reads the same whatever standard_conforming_strings is set to.
            return Sql("E" + quoted.replace("\\", "\\\\"))
        return Sql(quoted)
    raise TypeError(f"cannot write a {type(value).__name__} as a SQL literal")


def quote_jsonb(value: Any) -> Sql:
    """A JSON document (keys sorted) as a ``'...'::jsonb`` literal."""
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return Sql(quote_literal(text) + "::jsonb")


def check_identifier(name: str) -> str:
    """`name` unchanged when it is a plain identifier; raises `UnsafeName` otherwise."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise UnsafeName(f"refusing to use {name!r} as an SQL identifier")
    return name


def quote_ident(name: str) -> Sql:
    """A validated identifier, double-quoted."""
    return Sql('"' + check_identifier(name) + '"')


def check_queue_name(name: str) -> str:
    """`name` unchanged when it is a step or dead-letter queue name; raises `UnsafeName`."""
    valid = isinstance(name, str) and (
        naming.is_valid_name(name) or naming.split_step_queue_name(name) is not None
    )
    if not valid or naming.queue_name_problem(name):
        raise UnsafeName(f"refusing to use {name!r} as a queue name")
    return name


def quote_queue(name: str) -> Sql:
    """A validated queue name as a text literal (for the pgmq functions)."""
    return quote_literal(check_queue_name(name))


def quote_queue_table(name: str, prefix: str = "q") -> Sql:
    """The schema-qualified, quoted table of queue `name` (``q``) or of its archive (``a``)."""
    if prefix not in _QUEUE_TABLE_PREFIXES:
        raise UnsafeName(f"unknown queue table prefix {prefix!r}")
    return Sql("pgmq." + quote_ident(f"{prefix}_{check_queue_name(name)}"))


def _finalize(value: object) -> object:
    if isinstance(value, Sql):
        return value
    raise UnquotedValue(
        f"template printed {value!r} without a quoting filter (literal, jsonb, ident, queue, "
        "queue_table)"
    )


def _strict(quote: Callable[..., Sql]) -> Callable[..., Sql]:
    """`quote` as a filter: an undefined value (or an attribute the sandbox hides) raises."""

    @wraps(quote)
    def quote_defined(value: object, *args: Any) -> Sql:
        if isinstance(value, Undefined):
            str(value)  # StrictUndefined raises UndefinedError, or SecurityError in the sandbox
        return quote(value, *args)

    return quote_defined


@cache
def environment() -> SandboxedEnvironment:
    """The sandboxed template environment (created once)."""
    env = SandboxedEnvironment(
        loader=PackageLoader("orchestrator.compiler", "templates"),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        finalize=_finalize,
    )
    env.filters.update(
        literal=_strict(quote_literal),
        jsonb=_strict(quote_jsonb),
        ident=_strict(quote_ident),
        queue=_strict(quote_queue),
        queue_table=_strict(quote_queue_table),
    )
    return env


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>.sql.j2``; the result is stripped of surrounding blanks."""
    return environment().get_template(f"{template}.sql.j2").render(**context).strip()


def render_string(source: str, **context: Any) -> str:
    """Render template text with the same environment (for tests and ad-hoc statements)."""
    return environment().from_string(source).render(**context).strip()
