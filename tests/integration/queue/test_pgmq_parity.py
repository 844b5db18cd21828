"""Every public function of PGMQ 1.13 exists here with PGMQ's signature: the same name,
argument names, argument types, defaults and result type. PGMQ's own SQL (shipped by the `pgmq`
Python package) is installed into a database of its own and the catalogs are compared."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files

import asyncpg
import pytest

from orchestrator.db import connect
from tests.integration.queue.helpers import pgmq_sql

# PGMQ's trigger function: ours is pgmq_ext.notify_insert(), not part of the API.
NOT_API = {"notify_queue_listeners"}

SIGNATURES = """
    SELECT p.proname::text,
           pg_catalog.pg_get_function_arguments(p.oid),
           pg_catalog.pg_get_function_result(p.oid)
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'pgmq'::regnamespace AND p.proname NOT LIKE '\\_%'
     ORDER BY 1, 2
"""


async def install_pgmq(dsn: str) -> None:
    """PGMQ's SQL into the (empty) database at `dsn`."""
    conn = await connect(dsn)
    try:
        await conn.execute(pgmq_sql())
    finally:
        await conn.close()


def _normalised(signature: str) -> str:
    """PGMQ spells some defaults with casts (`'{}'::jsonb`); compare the words that matter."""
    return " ".join(signature.replace("character varying", "varchar").split())


async def _signatures(conn: asyncpg.Connection) -> set[tuple[str, str, str]]:
    rows = await conn.fetch(SIGNATURES)
    return {(r[0], _normalised(r[1]), _normalised(r[2])) for r in rows}


async def test_pgmq_sql_is_version_1_13() -> None:
    assert (files("pgmq.sql") / "VERSION").read_text().strip().startswith("1.13.")


async def test_every_pgmq_function_exists_with_its_signature(
    conn: asyncpg.Connection, new_database: Callable[[], Awaitable[str]]
) -> None:
    theirs_dsn = await new_database()
    await install_pgmq(theirs_dsn)
    theirs_conn = await connect(theirs_dsn)
    try:
        theirs = {s for s in await _signatures(theirs_conn) if s[0] not in NOT_API}
    finally:
        await theirs_conn.close()
    ours = await _signatures(conn)
    assert len(theirs) > 60
    assert sorted(theirs - ours) == []


@pytest.mark.parametrize("function", ["read_grouped", "read_grouped_rr", "read_grouped_head"])
async def test_grouped_reads_return_what_pgmq_returns(
    conn: asyncpg.Connection, new_database: Callable[[], Awaitable[str]], function: str
) -> None:
    """The same messages, in the same groups, read by the same call: the same msg_ids (in
    msg_id order; PGMQ returns them in update order)."""
    theirs_dsn = await new_database()
    await install_pgmq(theirs_dsn)
    theirs_conn = await connect(theirs_dsn)
    groups = ["a", "b", "a", "c", "b", "a", None, "c", None]
    headers = [None if g is None else {"x-pgmq-group": g} for g in groups]
    call = f"SELECT * FROM pgmq.{function}(queue_name=>$1::text, vt=>$2::integer, qty=>$3::integer)"
    try:
        got = []
        for c in (conn, theirs_conn):
            await c.execute("SELECT pgmq.create('fifo')")
            await c.execute(
                "SELECT pgmq.send_batch('fifo', $1::jsonb[], $2::jsonb[])",
                [{"i": i} for i in range(len(groups))],
                headers,
            )
            rounds = []
            for qty in (2, 3, 4):
                rows = await c.fetch(call, "fifo", 60, qty)
                rounds.append(sorted(r["msg_id"] for r in rows))
            got.append(rounds)
    finally:
        await theirs_conn.close()
    assert got[0] == got[1]
