"""Named SQL: every package keeps its queries in `<package>/sql/queries.sql`.

Each query starts with a `-- name: <name>` line, then a one-line description (more comment
lines may follow), then the statement. `named_queries(package)` parses the file once per
process and returns the statements by name, with the comment lines and the final `;` removed,
so the text asyncpg prepares is the statement alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib.resources import files

_HEADER = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)[ \t]*$", re.M)


@cache
def named_queries(package: str) -> Mapping[str, str]:
    """The queries of `<package>/sql/queries.sql` by name (parsed once per process)."""
    text = (files(package) / "sql" / "queries.sql").read_text(encoding="utf-8")
    return parse_queries(text, f"{package}/sql/queries.sql")


def parse_queries(text: str, source: str) -> dict[str, str]:
    """Split the text of a queries file into statements by name; `ValueError` on a repeat."""
    chunks = _HEADER.split(text)[1:]
    found: dict[str, str] = {}
    for name, body in zip(chunks[::2], chunks[1::2], strict=True):
        if name in found:
            raise ValueError(f"{source}: query {name!r} is defined twice")
        found[name] = _statement(body)
    return found


def _statement(body: str) -> str:
    lines = [line for line in body.splitlines() if line and not line.lstrip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";").rstrip()
