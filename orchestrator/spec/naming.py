"""Names of pipelines and steps, and the queue names derived from them.

Pure functions shared by the validator, the compiler and the runtime, so every layer derives
exactly the same queue names:

- step queue: ``<pipeline>__<step>`` (double underscore);
- dead-letter queue: the pipeline's ``dead_letter`` setting, else ``<pipeline>_dlq``.

Pipeline and step names match ``[a-z][a-z0-9_]*`` with no ``__`` and no trailing ``_``, so a
step queue name splits back into its pipeline and step unambiguously, and no dead-letter queue
(which never contains ``__``) can equal a step queue.
"""

from __future__ import annotations

import re

MAX_QUEUE_NAME_LENGTH = 47
"""Longest queue name the queue layer accepts (PostgreSQL's 63-byte identifiers minus prefixes)."""

NAME_PATTERN = r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"
"""Pipeline, step, schedule and dead-letter queue names (same regex in Python and JSON Schema)."""

NAME_RULE = "lowercase letters, digits and single underscores, starting with a letter"
"""The naming rule in words, for error messages."""

STEP_SEPARATOR = "__"
DEAD_LETTER_SUFFIX = "_dlq"

_NAME = re.compile(NAME_PATTERN)


def is_valid_name(name: str) -> bool:
    """True when `name` is a valid pipeline, step or dead-letter queue name."""
    return _NAME.match(name) is not None


def name_problem(name: str) -> str | None:
    """Why `name` is not a valid name, or None when it is."""
    if is_valid_name(name):
        return None
    if not name:
        return "name must not be empty"
    if STEP_SEPARATOR in name:
        return f"invalid name '{name}': '__' is reserved as the pipeline/step separator"
    if name.endswith("_"):
        return f"invalid name '{name}': must not end with '_'"
    return f"invalid name '{name}': use {NAME_RULE}"


def step_queue_name(pipeline: str, step: str) -> str:
    """Queue that holds the messages waiting for `step` of `pipeline`."""
    return f"{pipeline}{STEP_SEPARATOR}{step}"


def dead_letter_queue_name(pipeline: str, dead_letter: str | None = None) -> str:
    """Dead-letter queue of `pipeline`: its `dead_letter` setting, else ``<pipeline>_dlq``."""
    return dead_letter or f"{pipeline}{DEAD_LETTER_SUFFIX}"


def split_step_queue_name(queue: str) -> tuple[str, str] | None:
    """``(pipeline, step)`` of a step queue name, or None when `queue` is not one."""
    pipeline, sep, step = queue.partition(STEP_SEPARATOR)
    if not sep or not (is_valid_name(pipeline) and is_valid_name(step)):
        return None
    return pipeline, step


def queue_name_problem(queue: str) -> str | None:
    """Why `queue` is too long for the queue layer, or None when it fits."""
    if len(queue) <= MAX_QUEUE_NAME_LENGTH:
        return None
    return (
        f"queue name '{queue}' is {len(queue)} characters; "
        f"the queue layer allows at most {MAX_QUEUE_NAME_LENGTH}"
    )
