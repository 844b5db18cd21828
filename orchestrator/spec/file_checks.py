"""Validation of one pipeline file, stage by stage.

Stages: YAML (marks, duplicate keys, limits) -> JSON Schema -> graph -> pydantic models (value
checks the schema cannot make, then whole-pipeline rules). Every problem is reported once: a
later structural stage (schema, model fields) stays silent at a position an earlier one already
reported, and identical messages at one position are merged. The graph checks run on the raw
data, so a broken reference is reported even when other parts of the file are invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.spec.contracts import contract_issues, inline_file_refs
from orchestrator.spec.diagnostics import Diagnostic, Issue, dotted, with_key
from orchestrator.spec.graph import StepLinks, analyze
from orchestrator.spec.load import Document, load_bytes
from orchestrator.spec.model_errors import build_model
from orchestrator.spec.models import Pipeline
from orchestrator.spec.schema_errors import schema_issues


@dataclass
class FileReport:
    """The outcome for one file: its pipeline when valid, and its diagnostics."""

    file: str
    document: Document
    pipeline: Pipeline | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    _structural: set[tuple[int, int]] = field(default_factory=set, repr=False)
    _stage: set[tuple[int, int]] = field(default_factory=set, repr=False)
    _seen: set[Diagnostic] = field(default_factory=set, repr=False)

    @property
    def errors(self) -> list[Diagnostic]:
        """The diagnostics that make the file invalid (not the warnings)."""
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def declared_name(self) -> str | None:
        """The ``pipeline:`` value as written, even when the file is otherwise invalid."""
        data = self.document.data
        name = data.get("pipeline") if isinstance(data, dict) else None
        return name if isinstance(name, str) else None

    def report(self, issue: Issue, *, structural: bool = False) -> None:
        """Add `issue` unless it repeats one already reported (see module docstring)."""
        mark = self.document.locate(issue.path, issue.target)
        position = (mark.line, mark.column)
        if structural and position in self._structural:
            return
        message = with_key(issue.path, issue.message)
        diagnostic = Diagnostic(
            self.file, mark.line, mark.column, message, dotted(issue.path), issue.severity
        )
        if diagnostic in self._seen:  # a set: 20,000 diagnostics must not cost quadratic time
            return
        self._seen.add(diagnostic)
        self.diagnostics.append(diagnostic)
        if structural:
            self._stage.add(position)

    def report_load_problems(self) -> None:
        """Problems found while reading YAML come first and count as structural."""
        for problem in self.document.problems:
            mark = problem.mark
            line, column = (mark.line, mark.column) if mark else (None, None)
            diagnostic = Diagnostic(self.file, line, column, problem.message)
            self._seen.add(diagnostic)
            self.diagnostics.append(diagnostic)
            if mark:
                self._stage.add((mark.line, mark.column))
        self.end_stage()

    def end_stage(self) -> None:
        """Positions reported by the stage just finished silence later structural stages."""
        self._structural |= self._stage
        self._stage = set()


def check_file(path: Path, *, import_models: bool = False) -> FileReport:
    """All single-file stages for the file at `path`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        report = FileReport(str(path), Document(data=None))
        message = f"cannot read file: {exc.strerror or exc}"
        report.diagnostics.append(Diagnostic(str(path), None, None, message))
        return report
    return check_document(load_bytes(raw), str(path), import_models=import_models)


def check_document(document: Document, file: str, *, import_models: bool = False) -> FileReport:
    """All single-file stages for an already loaded document; `import_models` imports the
    pydantic models named as contracts to check the edges they are on."""
    report = FileReport(file, document)
    report.report_load_problems()
    if document.data is None:
        return report
    _report_all(report, inline_file_refs(document.data, file), structural=True)
    from_schema = schema_issues(document.data)
    _report_all(report, from_schema, structural=True)
    _report_all(report, _graph_issues(document.data))
    outcome = build_model(document.data)
    _report_all(report, outcome.value_issues, structural=True)
    if not from_schema:  # otherwise the schema stage has reported these problems already
        _report_all(report, outcome.field_issues, structural=True)
    _report_all(report, outcome.pipeline_issues)
    if outcome.pipeline is not None and not report.diagnostics:
        _report_all(report, contract_issues(outcome.pipeline, import_models=import_models))
    if not report.errors:
        report.pipeline = outcome.pipeline
    return report


def _report_all(report: FileReport, issues: list[Issue], *, structural: bool = False) -> None:
    for issue in issues:
        report.report(issue, structural=structural)
    report.end_stage()


def _graph_issues(data: object) -> list[Issue]:
    """Graph checks on the raw data, so they run even when other parts of the file are bad."""
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, dict):
        return []
    return analyze({name: _raw_links(step) for name, step in steps.items()}).issues


def _raw_links(step: object) -> StepLinks:
    if not isinstance(step, dict):
        return StepLinks(complete=False)
    after, after_ok = _raw_refs(step.get("after"))
    following, next_ok = _raw_refs(step.get("next"))
    return StepLinks(following, after, complete=after_ok and next_ok)


def _raw_refs(value: object) -> tuple[tuple[str, ...], bool]:
    if value is None:
        return (), True
    if isinstance(value, str):
        return (value,), True
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value), True
    return (), False
