"""The loader API the other layers use, on top of the file and project checks.

``load_pipelines(paths)`` finds pipeline files (see `orchestrator.spec.files`), validates each
(`orchestrator.spec.file_checks`), then checks them together
(`orchestrator.spec.project_checks`), and returns the valid pipelines plus every diagnostic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import InvalidPipelineFiles
from orchestrator.spec.diagnostics import Diagnostic, format_all
from orchestrator.spec.file_checks import FileReport, check_document, check_file
from orchestrator.spec.files import as_paths, discover
from orchestrator.spec.load import load_text
from orchestrator.spec.models import Pipeline
from orchestrator.spec.project_checks import (
    check_handlers,
    check_shared_rates,
    check_topics,
    check_unique_names,
    check_unique_queues,
)

DEFAULT_PATH = "pipelines"


@dataclass
class LoadResult:
    """Valid pipelines and every diagnostic; `sources` maps pipeline name -> file."""

    pipelines: list[Pipeline] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no file has a problem."""
        return not self.errors

    @property
    def errors(self) -> list[Diagnostic]:
        """The diagnostics that make a file invalid; the others are warnings."""
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def step_count(self) -> int:
        """Steps over all valid pipelines."""
        return sum(len(p.steps) for p in self.pipelines)

    def raise_for_errors(self) -> None:
        """Raise `ConfigError` listing every diagnostic, when there are any."""
        if self.errors:
            count = len(self.errors)
            noun = "error" if count == 1 else "errors"
            message = f"{count} {noun} in pipeline files:\n{format_all(self.diagnostics)}"
            raise InvalidPipelineFiles(message)


def load_pipelines(
    paths: str | Path | Sequence[str | Path] = DEFAULT_PATH, *, import_handlers: bool = False
) -> LoadResult:
    """Load and validate the pipeline files under `paths` (files or directories)."""
    discovery = discover(as_paths(paths))
    reports = [check_file(path, import_models=import_handlers) for path in discovery.files]
    check_unique_names(reports)
    check_unique_queues(reports)
    check_shared_rates(reports)
    check_topics(reports)
    if import_handlers:
        checked: dict[str, str | None] = {}
        for report in reports:
            check_handlers(report, checked)
    return _result(reports, discovery.diagnostics)


def load_pipelines_or_raise(
    paths: str | Path | Sequence[str | Path] = DEFAULT_PATH, *, import_handlers: bool = False
) -> list[Pipeline]:
    """Like `load_pipelines`, raising `ConfigError` with every diagnostic when any file is bad."""
    result = load_pipelines(paths, import_handlers=import_handlers)
    result.raise_for_errors()
    return result.pipelines


def parse_pipeline(text: str, file: str = "<string>") -> Pipeline:
    """One pipeline from YAML text; raises `ConfigError` listing every problem."""
    report = check_document(load_text(text), file)
    result = _result([report], [])
    result.raise_for_errors()
    return result.pipelines[0]


def _result(reports: list[FileReport], path_diagnostics: list[Diagnostic]) -> LoadResult:
    diagnostics = [*path_diagnostics, *(d for r in reports for d in r.diagnostics)]
    valid = [r for r in reports if r.pipeline is not None and not r.errors]
    return LoadResult(
        pipelines=[r.pipeline for r in valid if r.pipeline is not None],
        diagnostics=sorted(diagnostics, key=Diagnostic.sort_key),
        files=[r.file for r in reports],
        sources={r.pipeline.name: r.file for r in valid if r.pipeline is not None},
    )
