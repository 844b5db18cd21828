"""Which files are pipeline files.

A path may be a file (always checked, whatever its name) or a directory, whose ``*.yaml`` and
``*.yml`` files are pipeline files (not recursively). Names starting with ``_`` or ``.`` are
skipped in directories: they are drafts, shared snippets or editor files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.spec.diagnostics import Diagnostic

SUFFIXES = (".yaml", ".yml")
SKIPPED_PREFIXES = ("_", ".")


@dataclass
class Discovery:
    """Files found, in a stable order, and problems with the paths themselves."""

    files: list[Path] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def as_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """One path or several, as a list of `Path`s."""
    if isinstance(paths, str | Path):
        return [Path(paths)]
    return [Path(p) for p in paths]


def discover(paths: Iterable[Path]) -> Discovery:
    """Pipeline files under `paths`; each file once, even when named twice."""
    found = Discovery()
    seen: set[Path] = set()
    for path in paths:
        for file in _files_of(path, found):
            if file.resolve() not in seen:
                seen.add(file.resolve())
                found.files.append(file)
    return found


def is_pipeline_file(path: Path) -> bool:
    """True for ``*.yaml``/``*.yml`` not starting with ``_`` or ``.``."""
    return path.suffix in SUFFIXES and not path.name.startswith(SKIPPED_PREFIXES)


def _files_of(path: Path, found: Discovery) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if is_pipeline_file(p) and p.is_file())
        if not files:
            message = "no pipeline files (*.yaml, *.yml) in this directory"
            found.diagnostics.append(Diagnostic(str(path), None, None, message))
        return files
    if path.exists():
        return [path]
    found.diagnostics.append(Diagnostic(str(path), None, None, "no such file or directory"))
    return []
