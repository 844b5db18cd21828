"""Topics as written in pipeline files: routing keys (``publish``) and patterns (``subscribe``).

The rules are the queue layer's (``queue/sql/functions/12_topics.sql``: `validate_routing_key`,
`validate_topic_pattern`, and the ``compiled_regex`` of ``pgmq.topic_bindings``), checked here
in the same order so that a file `validate` accepts never fails in `apply` or at run time:

- a routing key is 1-255 characters of ``[a-zA-Z0-9._-]``, with no leading or trailing dot and
  no ``..``;
- a pattern may also hold ``*`` (exactly one dot-separated segment) and ``#`` (zero or more
  segments), but not ``**``, ``##``, ``*#`` or ``#*``.

`matches` applies a pattern to a key as the queue layer routes (a ``#`` next to a dot absorbs
that dot, so ``orders.#`` matches ``orders``). ``tests/integration/queue/test_topic_rules.py``
runs one corpus through these functions and the SQL ones.
"""

from __future__ import annotations

import re
from functools import cache

MAX_TOPIC_LENGTH = 255
"""Longest routing key or pattern the queue layer accepts."""

ROUTING_KEY_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
"""Regex of a routing key's characters and dots (valid in Python and JSON Schema / ECMA 262);
the length is checked apart."""

TOPIC_PATTERN_PATTERN = r"^[A-Za-z0-9_*#-]+(\.[A-Za-z0-9_*#-]+)*$"
"""Regex of a pattern's characters and dots; adjacent wildcards are checked apart."""

ROUTING_KEY_HINT = (
    "use dot-separated words of letters, digits, '_' and '-' (no wildcards), e.g. orders.created"
)

TOPIC_PATTERN_HINT = (
    "use dot-separated words of letters, digits, '_' and '-', with '*' for exactly one word "
    "and '#' for any number of words, e.g. orders.* or orders.#"
)

_KEY_CHARS = re.compile(r"[A-Za-z0-9._-]+")
_PATTERN_CHARS = re.compile(r"[A-Za-z0-9._*#-]+")


def routing_key_problem(key: str) -> str | None:
    """Why `key` is not a routing key the queue layer accepts, or None."""
    if key == "":
        return "a routing key cannot be empty"
    if len(key) > MAX_TOPIC_LENGTH:
        return f"routing key is {len(key)} characters long; at most {MAX_TOPIC_LENGTH}"
    if not _KEY_CHARS.fullmatch(key):
        return f"invalid routing key '{key}'; {ROUTING_KEY_HINT}"
    return _dots_problem("routing key", key)


def topic_pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a topic pattern the queue layer accepts, or None."""
    if pattern == "":
        return "a topic pattern cannot be empty"
    if len(pattern) > MAX_TOPIC_LENGTH:
        return f"topic pattern is {len(pattern)} characters long; at most {MAX_TOPIC_LENGTH}"
    if not _PATTERN_CHARS.fullmatch(pattern):
        return f"invalid topic pattern '{pattern}'; {TOPIC_PATTERN_HINT}"
    problem = _dots_problem("topic pattern", pattern)
    if problem:
        return problem
    for pair in ("**", "##", "*#", "#*"):
        if pair in pattern:
            return (
                f"invalid topic pattern '{pattern}': '{pair}' (adjacent wildcards); a '*' is one "
                "word, a '#' any number of words: separate wildcards with dots"
            )
    return None


def _dots_problem(what: str, value: str) -> str | None:
    if value.startswith("."):
        return f"{what} '{value}' cannot start with a dot"
    if value.endswith("."):
        return f"{what} '{value}' cannot end with a dot"
    if ".." in value:
        return f"{what} '{value}' cannot contain two dots in a row"
    return None


def check_routing_key(value: str) -> str:
    """`value` if it is a valid routing key, else ValueError."""
    problem = routing_key_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def check_topic_pattern(value: str) -> str:
    """`value` if it is a valid topic pattern, else ValueError."""
    problem = topic_pattern_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def pattern_regex(pattern: str) -> str:
    """The anchored regular expression of a valid `pattern`, as ``pgmq.topic_bindings``
    compiles it (same replacements in the same order)."""
    text = pattern.replace(".", r"\.").replace("*", "[^.]+")
    text = text.replace(r"\.#\.", r"(\.[^.]+)*\.").replace(r"#\.", r"([^.]+\.)*")
    text = text.replace(r"\.#", r"(\.[^.]+)*").replace("#", ".*")
    return f"^{text}$"


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern_regex(pattern))


def matches(pattern: str, key: str) -> bool:
    """True when a message published with routing key `key` reaches a binding of `pattern`."""
    return _compiled(pattern).fullmatch(key) is not None
