"""`orchestrator validate [PATH ...]`, `schema` and `graph`: offline work on pipeline files.

validate prints one line per problem on stderr (``file:LINE:COL: error: message``) or, with
``--json`` (``--format json`` is the same), a JSON list of diagnostics on stdout. Exit 0 when every
file is valid, 1 when any is not, 2 when a path does not exist.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import UsageError

if TYPE_CHECKING:
    from orchestrator.spec.diagnostics import Diagnostic


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `validate`, `schema` and `graph` commands."""
    validate = sub.add_parser(
        "validate",
        help="check pipeline files offline (no database)",
        description=(
            "Check pipeline files without a database: YAML, schema, types, graph, names. "
            "Directories are searched for *.yaml and *.yml (not recursively; names starting "
            "with '_' or '.' are skipped)."
        ),
    )
    validate.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="pipeline files or directories (default: pipelines)",
    )
    validate.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="output format (default: text; --format json is the same as --json)",
    )
    validate.add_argument(
        "--import-handlers",
        action="store_true",
        help="also import every handler (cwd on sys.path) and check its signature",
    )
    validate.set_defaults(func=_validate)
    schema = sub.add_parser("schema", help="print the JSON Schema of pipeline files")
    schema.set_defaults(func=_schema)
    _register_graph(sub)


def _validate(args: argparse.Namespace) -> int:
    from orchestrator.spec.validate import DEFAULT_PATH, load_pipelines

    paths = [Path(p) for p in (args.paths or [DEFAULT_PATH])]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(missing)}")
    result = load_pipelines(paths, import_handlers=args.import_handlers)
    if args.format == "json" or args.json:
        print(json.dumps([d.to_dict() for d in result.diagnostics], indent=2))
    else:
        for diagnostic in result.diagnostics:
            print(diagnostic.format(), file=sys.stderr)
        print(_summary(result.diagnostics, len(result.pipelines), result.step_count))
    return 0 if result.ok else 1


def _summary(diagnostics: list[Diagnostic], pipelines: int, steps: int) -> str:
    valid = f"{_count(pipelines, 'pipeline')} valid ({_count(steps, 'step')})"
    if not diagnostics:
        return valid
    errors = [d for d in diagnostics if d.severity == "error"]
    warnings = len(diagnostics) - len(errors)
    noted = f"; {_count(warnings, 'warning')}" if warnings else ""
    if not errors:
        return valid + noted
    files = {d.file for d in errors}
    return f"{_count(len(errors), 'error')} in {_count(len(files), 'file')}; {valid}{noted}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _schema(args: argparse.Namespace) -> int:
    from orchestrator.spec.schema import schema_text

    sys.stdout.write(schema_text())
    return 0


# -- graph -------------------------------------------------------------------------------------


def _register_graph(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    graph = sub.add_parser(
        "graph",
        help="print a pipeline's step graph (Graphviz dot or Mermaid)",
        description=(
            "Print the step graph of PIPELINE from the pipeline files, offline: "
            "`orchestrator graph orders | dot -Tsvg > orders.svg`, or --format mermaid for "
            "Markdown. Joins (steps with several predecessors) are drawn as double boxes."
        ),
    )
    graph.add_argument("pipeline", metavar="PIPELINE", help="name of a pipeline in --pipelines")
    graph.add_argument(
        "--format", choices=["dot", "mermaid"], default="dot", help="output format (default: dot)"
    )
    graph.set_defaults(func=_graph)


def _graph(args: argparse.Namespace) -> int:
    from orchestrator.cli import require_path
    from orchestrator.cli.graph import dot, mermaid
    from orchestrator.spec import load_pipelines
    from orchestrator.spec.suggest import did_you_mean

    result = load_pipelines(require_path(args.pipelines))
    result.raise_for_errors()
    found = {p.name: p for p in result.pipelines}
    if args.pipeline not in found:
        raise UsageError(
            f"no pipeline {args.pipeline!r} in {args.pipelines}{did_you_mean(args.pipeline, found)}"
            f"; pipelines: {', '.join(sorted(found)) or 'none'}"
        )
    pipeline = found[args.pipeline]
    sys.stdout.write(dot(pipeline) if args.format == "dot" else mermaid(pipeline))
    return 0
