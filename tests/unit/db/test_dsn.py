"""DSN resolution order and password redaction."""

from __future__ import annotations

import pytest

from orchestrator.db.dsn import redact, resolve_dsn
from orchestrator.errors import ConfigError


def test_explicit_dsn_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    assert resolve_dsn("postgresql://flag/db") == "postgresql://flag/db"


def test_database_url_is_next(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    assert resolve_dsn(None) == "postgresql://env/db"


def test_no_embedded_when_not_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="--dsn"):
        resolve_dsn(None, start_embedded=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://app:s3cret@db:5432/x", "postgresql://app:***@db:5432/x"),
        (
            "cannot connect to postgres://u:p%40ss@h/d: refused",
            "cannot connect to postgres://u:***@h/d: refused",
        ),
        ("host=db user=app password=s3cret dbname=x", "host=db user=app password=*** dbname=x"),
        ("password = 'a b c' host=x", "password = *** host=x"),
        (
            "postgresql://postgres:@/postgres?host=/tmp",
            "postgresql://postgres:@/postgres?host=/tmp",
        ),
        ("postgresql://app@db/x", "postgresql://app@db/x"),
    ],
)
def test_redact_hides_passwords(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "url", ["postgresql://u:secret@host:notaport/db", "postgresql://u:secret@[::1/db"]
)
async def test_a_malformed_url_is_a_config_error_without_the_password(url: str) -> None:
    from orchestrator.db.connect import connect
    from orchestrator.errors import ConfigError

    with pytest.raises(ConfigError, match="invalid database URL") as caught:
        await connect(url)
    assert "secret" not in str(caught.value)
