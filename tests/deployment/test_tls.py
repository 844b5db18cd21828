"""TLS: every command and the runtime with `sslmode=verify-full` against an endpoint that only
lets clients in over TLS, with a self-signed certificate authority made for the test (TLS is
terminated by PgBouncer in front of the embedded server, whose build has no TLS: see
tests/support/tls.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from orchestrator.db import connect
from orchestrator.errors import DatabaseUnavailable
from tests.deployment.support import ok
from tests.integration.process.support import EFFECTS_TABLE, make_project
from tests.support.pg import temporary_database
from tests.support.tls import TlsServer


@pytest.fixture
async def tls_database(admin_dsn: str) -> AsyncIterator[str]:
    async with temporary_database(admin_dsn) as dsn:
        yield urlsplit(dsn).path.lstrip("/")


async def test_every_command_and_the_runtime_over_verified_tls(
    tls_server: TlsServer, tls_database: str, tmp_path: Path
) -> None:
    url = tls_server.verified(tls_database)
    conn = await connect(url)
    try:  # the client side of the connection is TLS, verified against our CA
        ssl_object = conn._transport.get_extra_info("ssl_object")
        assert ssl_object is not None and ssl_object.version().startswith("TLS")
    finally:
        await conn.close()

    project = make_project(tmp_path)
    ok(project.cli("install", "--dsn", url))
    ok(project.cli("apply", "--dsn", url))
    conn = await connect(url)
    try:
        await conn.execute(EFFECTS_TABLE)
    finally:
        await conn.close()
    run_id = ok(project.cli("send", "chain", '{"n": 1}', "--dsn", url)).strip()
    ok(project.cli("run", "--drain", "--workers", "2", "--dsn", url))
    assert "chain" in ok(project.cli("status", "--dsn", url))
    assert "third" in ok(project.cli("trace", run_id, "--dsn", url))
    ok(project.cli("dlq", "list", "chain", "--dsn", url))
    conn = await connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM effects WHERE run_id = $1", run_id) == 3
    finally:
        await conn.close()


async def test_a_certificate_that_does_not_verify_is_one_line(
    tls_server: TlsServer, tls_database: str, tmp_path: Path
) -> None:
    wrong_ca = tls_server.dsn(
        tls_database, sslmode="verify-full", sslrootcert=str(tls_server.other_ca)
    )
    with pytest.raises(DatabaseUnavailable, match="certificate verify failed"):
        await connect(wrong_ca)
    project = make_project(tmp_path)
    done = project.cli("status", "--dsn", wrong_ca)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("orchestrator: error:")]
    assert len(lines) == 1 and "certificate verify failed" in lines[0], done.stderr
    # Without TLS the endpoint refuses the client: TLS is really what the other test used.
    with pytest.raises(DatabaseUnavailable):
        await connect(tls_server.dsn(tls_database, sslmode="disable"))
