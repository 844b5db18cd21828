"""The named SQL: one loader, one layout, and every name used in code exists (and vice versa).

References are found in the code's syntax tree: `named_queries("<package>")["<name>"]`, a name
bound to `named_queries("<package>")` then subscripted, and `query("<name>")` where `query` is
the operations' or the application's accessor. A query counts as used when it is referenced,
or when its name is a string literal of code that picks queries by a computed name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.db.named_sql import named_queries, parse_queries

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = (
    "orchestrator.db",
    "orchestrator.store",
    "orchestrator.queue",
    "orchestrator.runtime",
    "orchestrator.ops",
    "orchestrator.compiler",
    "orchestrator.state",
    "pipelines",
)
ACCESSORS = {"orchestrator.ops.queries": "orchestrator.ops", "pipelines.handlers.sql": "pipelines"}
COMPUTED_SUFFIX = "_after"


def _code_files() -> Iterator[Path]:
    for top in ("orchestrator", "pipelines"):
        yield from sorted((ROOT / top).rglob("*.py"))


def _loader_package(node: ast.AST) -> str | None:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "named_queries"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ):
        return str(node.args[0].value)
    return None


def _accessor_package(tree: ast.Module, path: Path) -> str | None:
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if module in ACCESSORS:
        return ACCESSORS[module]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module in ACCESSORS
            and any(alias.name == "query" for alias in node.names)
        ):
            return ACCESSORS[node.module]
    return None


def _bindings(tree: ast.Module) -> dict[str, str]:
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and (package := _loader_package(node.value)):
            bound.update({t.id: package for t in node.targets if isinstance(t, ast.Name)})
    return bound


def _references(path: Path) -> Iterator[tuple[str, str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bound = _bindings(tree)
    accessor = _accessor_package(tree, path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            value = node.value
            package = _loader_package(value) or (
                bound.get(value.id) if isinstance(value, ast.Name) else None
            )
            if package:
                yield package, str(node.slice.value), node.lineno
        elif (
            accessor
            and isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "query"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            yield accessor, str(node.args[0].value), node.lineno


def _literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and type(n.value) is str}


def test_every_query_used_in_code_exists() -> None:
    missing = [
        f"{path.relative_to(ROOT)}:{line}: no query {name!r} in {package}/sql/queries.sql"
        for path in _code_files()
        for package, name, line in _references(path)
        if name not in named_queries(package)
    ]
    assert not missing, "\n".join(missing)
    assert sum(1 for p in _code_files() for _ in _references(p)) > 50


@pytest.mark.parametrize("package", PACKAGES)
def test_every_query_in_the_files_is_used(package: str) -> None:
    referenced = {name for p in _code_files() for pkg, name, _ in _references(p) if pkg == package}
    literals = set().union(*(_literals(p) for p in _code_files()))
    computed = {name + COMPUTED_SUFFIX for name in literals}
    unused = set(named_queries(package)) - referenced - literals - computed
    assert not unused, f"queries of {package} no code uses: {sorted(unused)}"


def test_parse_strips_comments_and_the_final_semicolon() -> None:
    text = "-- file header\n\n-- name: one\n-- What it does.\nSELECT 1;\n\n-- name: two\nSELECT 2\n"
    assert parse_queries(text, "x.sql") == {"one": "SELECT 1", "two": "SELECT 2"}


def test_a_name_defined_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="query 'one' is defined twice"):
        parse_queries("-- name: one\nSELECT 1\n-- name: one\nSELECT 2\n", "x.sql")
