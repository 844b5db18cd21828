"""Problems found in pipeline files, and how they are printed.

Checks produce `Issue`s: a message plus the path of the offending key or value inside the
document (``("steps", "barcode", "next", 0)``). The loader turns them into `Diagnostic`s by
looking the path up in the YAML marks, so every check stays independent of YAML positions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

DocPath = tuple[str | int, ...]
"""Where something is inside a pipeline document: mapping keys and list indexes."""

Target = Literal["key", "value"]
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Issue:
    """A problem at `path`; `target` says whether to point at the key or at its value.

    A path that does not exist in the document (a missing key) points at the closest
    existing parent's key.
    """

    path: DocPath
    message: str
    target: Target = "value"
    severity: Severity = "error"


class InvalidPipeline(ValueError):
    """Raised by model validators for problems that have their own document paths."""

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues = tuple(issues)
        super().__init__("; ".join(f"{dotted(i.path)}: {i.message}" for i in self.issues))


@dataclass(frozen=True)
class Diagnostic:
    """One error, located in a file. `line` and `column` are 1-based; None for a whole path."""

    file: str
    line: int | None
    column: int | None
    message: str
    key: str = ""
    severity: str = "error"

    def sort_key(self) -> tuple[str, int, int, str]:
        """Order of output: by file, then position, then message."""
        return (self.file, self.line or 0, self.column or 0, self.message)

    def format(self) -> str:
        """``file:LINE:COL: error: message`` (``file: error: message`` without a position)."""
        where = self.file if self.line is None else f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.severity}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form used by ``--format json``."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "severity": self.severity,
            "key": self.key,
            "message": self.message,
        }


_KEYED_PREFIXES = ("expected ", "must ", "invalid duration", "a duration ", "duration ")
"""Type and range messages: they say what is wrong but not where, so the key is put first."""


def with_key(path: DocPath, message: str) -> str:
    """`message` naming its key: ``retry.max_attempts must be at least 1, got 0``,
    ``concurrency: expected an integer, got the string 'many'``. The key is written relative to
    its step (``retry.max_attempts``, not ``steps.import.retry.max_attempts``)."""
    if not path or not message.startswith(_KEYED_PREFIXES):
        return message
    label = dotted(path[2:] if path[0] == "steps" and len(path) > 2 else path)
    return f"{label} {message}" if message.startswith("must ") else f"{label}: {message}"


def dotted(path: DocPath) -> str:
    """``steps.barcode.next[0]`` for ``("steps", "barcode", "next", 0)``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def format_all(diagnostics: Iterable[Diagnostic]) -> str:
    """All diagnostics, one per line."""
    return "\n".join(d.format() for d in diagnostics)
