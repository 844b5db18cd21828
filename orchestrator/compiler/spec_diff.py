"""What changed between two versions of a pipeline's canonical JSON, one line per setting.

`apply` stores `Pipeline.to_json` in ``orchestrator.pipelines.spec``; comparing that with the
current file's JSON tells a reader of the plan exactly which settings a new version changes,
e.g. ``steps.barcode.concurrency: 4 -> 8`` or ``queues.archive.retention: 30d -> 7d``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from orchestrator.spec.durations import format_duration

DURATION_KEYS = frozenset(
    {
        "visibility_timeout",
        "timeout",
        "delay",
        "initial",
        "max",
        "interval",
        "retention",
        "throttle",
        "catch_up",
    }
)
"""Keys whose numbers are durations in seconds (printed as 250ms, 5m, 7d)."""

_MAX_VALUE_LENGTH = 80


def spec_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Lines ``dotted.key: old -> new`` / ``dotted.key: added`` / ``dotted.key: removed``."""
    lines: list[str] = []
    _walk((), old, new, lines)
    return lines


def _walk(path: tuple[str, ...], old: Any, new: Any, lines: list[str]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in [*old, *(k for k in new if k not in old)]:
            where = (*path, str(key))
            if key not in new:
                lines.append(f"{_dotted(where)}: removed")
            elif key not in old:
                lines.append(f"{_dotted(where)}: added")
            else:
                _walk(where, old[key], new[key], lines)
    elif old != new:
        key = path[-1] if path else ""
        lines.append(f"{_dotted(path)}: {_value(key, old)} -> {_value(key, new)}")


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) or "spec"


def _value(key: str, value: Any) -> str:
    if key in DURATION_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
        return format_duration(float(value))
    text = orjson.dumps(value).decode()
    if len(text) > _MAX_VALUE_LENGTH:
        return text[: _MAX_VALUE_LENGTH - 3] + "..."
    return text
