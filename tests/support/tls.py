"""TLS with a self-signed certificate authority, in front of the embedded test server.

The embedded server's build has no TLS ("SSL is not supported by this build"), so TLS is
terminated where many deployments terminate it: a PgBouncer (Debian's, built with OpenSSL)
in session mode in front of the test server, with ``client_tls_sslmode = require`` (clients
without TLS are refused) and a server certificate for ``localhost`` / ``127.0.0.1`` signed
by a CA the `tls_server` fixture makes with openssl. Clients verify it with
``sslmode=verify-full`` and ``sslrootcert``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.pgbouncer import MISSING, ROOT, SKIPPED, PgBouncer, executable, start

TLS = """\
client_tls_sslmode = require
client_tls_key_file = {folder}/server.key
client_tls_cert_file = {folder}/server.crt
"""


@dataclass(frozen=True)
class TlsServer:
    bouncer: PgBouncer
    ca: Path
    """The certificate authority that signed the server's certificate."""
    other_ca: Path
    """A certificate authority that did not."""

    def dsn(self, database: str, **params: str) -> str:
        """URL of `database` over TLS; session pooling, so it says pool_mode=session."""
        return self.bouncer.dsn(database, pool_mode="session", **params).replace(
            "127.0.0.1", "localhost", 1
        )

    def verified(self, database: str) -> str:
        """URL with ``sslmode=verify-full`` against the CA that signed the certificate."""
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
    os.chmod(folder / "server.key", 0o600)


@pytest.fixture(scope="session")
def tls_server(pg_server: dict[str, object]) -> Iterator[TlsServer]:
    if executable() is None:
        SKIPPED.append(MISSING)
        pytest.skip(MISSING)
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates (apt-get install openssl)")
    folder = ROOT / ".orchestrator" / f"tls-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    make_certificates(folder)
    bouncer = start(
        str(pg_server["dsn"]), folder, pool_mode="session", extra=TLS.format(folder=folder)
    )
    try:
        yield TlsServer(bouncer, folder / "ca.crt", folder / "other.crt")
    finally:
        bouncer.stop()
        shutil.rmtree(folder, ignore_errors=True)
