"""An embedded PostgreSQL that only accepts TLS on TCP, with a self-signed certificate.

The `tls_server` fixture (one per test session) makes a certificate authority and a server
certificate for ``localhost`` / ``127.0.0.1`` with openssl, starts a second embedded server
whose pg_hba.conf lets TCP clients in only over TLS (``hostssl``), and stops it at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.db import embedded as embedded_db
from tests.support.pgbouncer import ROOT, free_port

HBA = """\
local   all   all                 trust
hostssl all   all   127.0.0.1/32  trust
hostssl all   all   ::1/128       trust
"""


@dataclass(frozen=True)
class TlsServer:
    port: int
    ca: Path
    """The certificate authority that signed the server's certificate."""
    other_ca: Path
    """A certificate authority that did not."""
    socket_dsn: str
    """Admin URL over the server's unix socket (no TLS)."""

    def dsn(self, database: str = "postgres", host: str = "localhost", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://postgres@{host}:{self.port}/{database}" + (
            f"?{query}" if query else ""
        )

    def verified(self, database: str = "postgres") -> str:
        """URL with ``sslmode=verify-full`` against the server's own CA."""
        return self.dsn(database, sslmode="verify-full", sslrootcert=str(self.ca))


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(folder: Path) -> None:
    """ca.crt, and server.crt/server.key for localhost and 127.0.0.1 signed by it; other.crt
    is a second, unrelated CA."""
    folder.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-subj", f"/CN=orchestrator test {ca}",
            cwd=folder,
        )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=localhost", cwd=folder,
    )  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=folder,
    )  # fmt: skip


def _install_certificate(pgdata: Path, certificates: Path, port: int) -> None:
    """Copy the server's key pair into pgdata (owned like pgdata, key readable by its owner
    only) and configure TLS on 127.0.0.1:`port`."""
    owner = os.stat(pgdata)
    for name in ("server.crt", "server.key"):
        target = pgdata / name
        shutil.copy(certificates / name, target)
        os.chmod(target, 0o600)
        if os.geteuid() == 0:
            os.chown(target, owner.st_uid, owner.st_gid)
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# TLS for the tests\nssl = on\nssl_cert_file = 'server.crt'\n"
            f"ssl_key_file = 'server.key'\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
        )
    (pgdata / "pg_hba.conf").write_text(HBA)


@pytest.fixture(scope="session")
def tls_server() -> Iterator[TlsServer]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates (apt-get install openssl)")
    base = ROOT / ".orchestrator" / f"tls-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    pgdata = base / "pgdata"
    make_certificates(base / "certs")
    embedded_db.ensure_running(pgdata)  # initdb and a first start
    embedded_db.stop(pgdata)
    port = free_port()
    _install_certificate(pgdata, base / "certs", port)
    socket_dsn = embedded_db.ensure_running(pgdata)
    try:
        yield TlsServer(port, base / "certs" / "ca.crt", base / "certs" / "other.crt", socket_dsn)
    finally:
        embedded_db.stop(pgdata)
        shutil.rmtree(base, ignore_errors=True)
