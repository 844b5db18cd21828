"""How a DSN reaches PostgreSQL: said in the URL or found out by the first connection, and
connections that work through PgBouncer in transaction mode."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from orchestrator.db import PoolMode, connect, create_pool, pool_mode, pooler_problem
from orchestrator.db.connect import Target, parse_target
from orchestrator.errors import ConfigError
from orchestrator.queue.client import Queue
from tests.support.pgbouncer import PgBouncer


def test_the_url_says_the_pool_mode_and_keeps_its_other_parameters() -> None:
    target = parse_target("postgresql://u:pw@h:6432/db?sslmode=require&pool_mode=transaction")
    assert target.mode is PoolMode.TRANSACTION
    assert target.dsn == "postgresql://u:pw@h:6432/db?sslmode=require"
    assert parse_target("postgresql://h/db?pool_mode=Session").mode is PoolMode.SESSION
    untouched = "postgresql://h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem"
    assert parse_target(untouched) == Target(untouched, None)
    assert parse_target("postgresql://h/db").mode is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("statement", "pool_mode=statement cannot work: a hand-off runs several statements"),
        ("sometimes", "invalid pool_mode='sometimes' in the database URL: use direct, session"),
    ],
)
def test_a_pool_mode_that_cannot_work_is_one_line(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_target(f"postgresql://h/db?pool_mode={value}")


async def test_the_first_connection_finds_out(dsn: str, pooled_dsn: str) -> None:
    assert await pool_mode(dsn) is PoolMode.DIRECT
    assert await pool_mode(pooled_dsn) is PoolMode.TRANSACTION
    conn = await connect(pooled_dsn)
    try:
        assert await conn.fetchval("SELECT 41 + $1::int", 1) == 42
        assert await conn.fetchval("SELECT '{\"a\": 1}'::jsonb") == {"a": 1}
    finally:
        await conn.close()


async def test_many_clients_share_few_server_connections_without_prepared_statements(
    pooled_dsn: str,
) -> None:
    """Far more clients than the pooler has server connections, each running the same
    statements over and over, inside transactions and out: nothing named survives on a
    server connection for another client to trip over."""
    conns = [await connect(pooled_dsn) for _ in range(30)]
    pool = await create_pool(pooled_dsn, min_size=2, max_size=10)
    try:

        async def client(k: int) -> None:
            conn = conns[k]
            for n in range(20):
                assert await conn.fetchval("SELECT $1::int + 1", n) == n + 1
                async with conn.transaction():
                    assert await conn.fetchval("SELECT $1::text", str(k)) == str(k)
                assert await pool.fetchval("SELECT $1::bigint * 2", n) == n * 2

        await asyncio.gather(*(client(k) for k in range(len(conns))))
        async with Queue(pool) as queue:
            await queue.create("pooled_q")
            ids = await queue.send_batch("pooled_q", [{"n": n} for n in range(50)])
            read = await queue.read("pooled_q", vt=30, qty=50)
            assert sorted(m.msg_id for m in read) == sorted(ids)
            assert await queue.archive("pooled_q", [m.msg_id for m in read]) == sorted(ids)
    finally:
        for conn in conns:
            await conn.close()
        await pool.close()


async def test_a_url_that_hides_the_pooler_ends_in_one_line_naming_the_setting(
    pgbouncer: PgBouncer, dsn: str
) -> None:
    """Told `pool_mode=session` while PgBouncer pools transactions, a client's cached
    statement is sent to a server connection that never saw it; the error names the setting."""
    lying = pgbouncer.behind(dsn, pool_mode="session")
    first, second = await connect(lying), await connect(lying)
    try:
        assert await first.fetchval("SELECT 1") == 1  # prepared on the idle server connection
        async with second.transaction():  # now that server connection is busy with this one
            await second.execute("SELECT 2")
            with pytest.raises(asyncpg.PostgresError) as caught:
                await first.fetchval("SELECT 1")
    finally:
        await first.close()
        await second.close()
    line = pooler_problem(caught.value)
    assert line is not None and "add pool_mode=transaction to the database URL" in line
    assert "\n" not in line
