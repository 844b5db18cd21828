"""Shared helpers of the queue layer's integration tests (plain functions, no fixtures)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import asyncpg
import pytest

SCHEMAS = ("pgmq", "pgmq_ext")

# Each query describes one kind of object in the queue layer's schemas, without OIDs, in a
# stable order. Columns are listed in position order but without attnum, so a column dropped
# by a migration (which leaves a hole in attnum) does not count as a difference.
_CATALOG_QUERIES: dict[str, str] = {
    "schemas": """
        SELECT n.nspname, pg_catalog.obj_description(n.oid, 'pg_namespace'),
               n.nspowner::regrole::text, n.nspacl::text
          FROM pg_catalog.pg_namespace n
         WHERE n.nspname = ANY ($1::text[])
         ORDER BY 1""",
    "relations": """
        SELECT n.nspname, c.relname, c.relkind::text, c.relpersistence::text,
               c.reloptions::text, pg_catalog.pg_get_partkeydef(c.oid),
               pg_catalog.pg_get_expr(c.relpartbound, c.oid), c.relispartition,
               pg_catalog.obj_description(c.oid, 'pg_class'), c.relacl::text,
               c.relowner::regrole::text, c.relreplident::text
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = ANY ($1::text[])
         ORDER BY 1, 2""",
    "columns": """
        SELECT n.nspname, c.relname,
               array_agg(ROW(a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                             a.attnotnull, a.attidentity, a.attgenerated,
                             pg_catalog.pg_get_expr(d.adbin, d.adrelid),
                             a.attcollation::regcollation::text,
                             a.attstorage, a.attcompression,
                             pg_catalog.col_description(c.oid, a.attnum))::text
                         ORDER BY a.attnum)
          FROM pg_catalog.pg_attribute a
          JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = ANY ($1::text[]) AND a.attnum > 0 AND NOT a.attisdropped
         GROUP BY 1, 2
         ORDER BY 1, 2""",
    "constraints": """
        SELECT n.nspname, coalesce(c.relname, t.typname), k.conname, k.contype::text,
               pg_catalog.pg_get_constraintdef(k.oid), k.condeferrable, k.convalidated
          FROM pg_catalog.pg_constraint k
          JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace
          LEFT JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
          LEFT JOIN pg_catalog.pg_type t ON t.oid = k.contypid
         WHERE n.nspname = ANY ($1::text[])
         ORDER BY 1, 2, 3""",
    "indexes": """
        SELECT n.nspname, c.relname, pg_catalog.pg_get_indexdef(i.indexrelid),
               i.indisprimary, i.indisunique
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = ANY ($1::text[])
         ORDER BY 1, 2""",
    "types": """
        SELECT n.nspname, t.typname, t.typtype::text, t.typcategory::text,
               pg_catalog.format_type(t.typbasetype, t.typtypmod), t.typnotnull,
               t.typdefault, pg_catalog.obj_description(t.oid, 'pg_type'),
               (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder)
                  FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid)::text
          FROM pg_catalog.pg_type t
          JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = ANY ($1::text[])
         ORDER BY 1, 2""",
    "functions": """
        SELECT n.nspname, p.proname,
               pg_catalog.pg_get_function_identity_arguments(p.oid),
               pg_catalog.pg_get_functiondef(p.oid),
               pg_catalog.obj_description(p.oid, 'pg_proc'), p.proacl::text,
               p.proowner::regrole::text
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = ANY ($1::text[])
         ORDER BY 1, 2, 3""",
    "sequences": """
        SELECT n.nspname, c.relname, s.seqtypid::regtype::text, s.seqstart, s.seqincrement,
               s.seqmax, s.seqmin, s.seqcache, s.seqcycle
          FROM pg_catalog.pg_sequence s
          JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = ANY ($1::text[])
         ORDER BY 1, 2""",
    "triggers": """
        SELECT n.nspname, c.relname, t.tgname, pg_catalog.pg_get_triggerdef(t.oid)
          FROM pg_catalog.pg_trigger t
          JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = ANY ($1::text[]) AND NOT t.tgisinternal
         ORDER BY 1, 2, 3""",
    "dependencies": """
        SELECT DISTINCT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid),
               pg_catalog.pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid),
               d.deptype::text
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_class c ON d.classid = 'pg_catalog.pg_class'::regclass
                                     AND c.oid = d.objid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = ANY ($1::text[]) AND d.deptype IN ('a', 'i', 'e')
         ORDER BY 1, 2, 3""",
}


async def catalog(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the catalog says about schemas pgmq and pgmq_ext, comparable across DBs."""
    result: dict[str, list[tuple[Any, ...]]] = {}
    for kind, query in _CATALOG_QUERIES.items():
        result[kind] = [tuple(r) for r in await conn.fetch(query, list(SCHEMAS))]
    return result


async def catalog_versions(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    """xmin of every catalog row of our objects: any DDL, even a no-op replace, changes one."""
    return [
        tuple(r)
        for r in await conn.fetch(
            """
            SELECT 'class', c.oid::regclass::text, c.xmin::text
              FROM pg_catalog.pg_class c
             WHERE c.relnamespace::regnamespace::text = ANY ($1::text[])
            UNION ALL
            SELECT 'proc', p.oid::regprocedure::text, p.xmin::text
              FROM pg_catalog.pg_proc p
             WHERE p.pronamespace::regnamespace::text = ANY ($1::text[])
            UNION ALL
            SELECT 'type', t.oid::regtype::text, t.xmin::text
              FROM pg_catalog.pg_type t
             WHERE t.typnamespace::regnamespace::text = ANY ($1::text[])
            ORDER BY 1, 2
            """,
            list(SCHEMAS),
        )
    ]


def assert_same_catalog(
    left: dict[str, list[tuple[Any, ...]]], right: dict[str, list[tuple[Any, ...]]]
) -> None:
    """Compare kind by kind, so a failure names what differs instead of dumping everything."""
    assert left.keys() == right.keys()
    for kind in left:
        only_left = [r for r in left[kind] if r not in right[kind]]
        only_right = [r for r in right[kind] if r not in left[kind]]
        assert (kind, only_left, only_right) == (kind, [], [])
        assert left[kind] == right[kind], kind


async def user_relations(conn: asyncpg.Connection) -> list[str]:
    """Every table, view, sequence and index outside the system schemas."""
    rows = await conn.fetch(
        """
        SELECT n.nspname || '.' || c.relname AS name
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
         ORDER BY 1
        """
    )
    return [r["name"] for r in rows]


async def queue_state(conn: asyncpg.Connection) -> dict[str, Any]:
    """Registered queues plus every relation and function: 'nothing changed' checks compare it."""
    return {
        "meta": [tuple(r) for r in await conn.fetch("SELECT * FROM pgmq.meta ORDER BY 1")],
        "relations": await user_relations(conn),
        "catalog": await catalog_versions(conn),
    }


async def expect_error(
    conn: asyncpg.Connection,
    query: str,
    *args: Any,
    match: str,
    sqlstate: str | None = None,
) -> asyncpg.PostgresError:
    """Run `query`, assert it fails with a message matching `match` (and `sqlstate`)."""
    with pytest.raises(asyncpg.PostgresError) as info:
        await conn.execute(query, *args) if not args else await conn.fetch(query, *args)
    error = info.value
    message = error.args[0] if error.args else str(error)
    assert re.search(match, message, re.DOTALL), f"{message!r} does not match {match!r}"
    if sqlstate is not None:
        assert error.sqlstate == sqlstate, (error.sqlstate, str(error))
    return error


def ids(rows: Sequence[asyncpg.Record], column: str = "msg_id") -> list[int]:
    """One column of `rows` as a list."""
    return [int(r[column]) for r in rows]


def pgmq_sql() -> str:
    """PGMQ 1.13's own SQL, as the `pgmq` Python package ships it."""
    return (files("pgmq.sql") / "pgmq.sql").read_text(encoding="utf-8")
