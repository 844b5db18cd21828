"""DSN resolution order and password redaction."""

from __future__ import annotations

import pytest

from orchestrator.db.dsn import passwords_in, redact, resolve_dsn, to_url
from orchestrator.errors import ConfigError


def test_explicit_dsn_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    assert resolve_dsn("postgresql://flag/db") == "postgresql://flag/db"


def test_database_url_is_next(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHESTRATOR_DSN", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    assert resolve_dsn(None) == "postgresql://env/db"


def test_no_embedded_when_not_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_DSN", raising=False)
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


def test_orchestrator_dsn_comes_before_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://second@h/db")
    monkeypatch.setenv("ORCHESTRATOR_DSN", "postgresql://first@h/db")
    assert resolve_dsn(None) == "postgresql://first@h/db"


@pytest.mark.parametrize(
    ("conninfo", "url"),
    [
        (
            "host=db.internal port=5433 dbname=erp user=worker password=s3cret",
            "postgresql://worker:s3cret@db.internal:5433/erp",
        ),
        ("host = h  dbname = d", "postgresql://h/d"),
        ("host=h password='a b\\'c' user=u", "postgresql://u:a%20b%27c@h/"),
        ("host=/run/postgresql dbname=d", "postgresql:///d?host=%2Frun%2Fpostgresql"),
        ("host=a,b port=1,2 dbname=d sslmode=require", "postgresql://a:1,b:2/d?sslmode=require"),
        ("host=::1 port=5432 dbname=d", "postgresql://[::1]:5432/d"),
    ],
)
def test_key_value_dsns_become_urls(conninfo: str, url: str) -> None:
    assert to_url(conninfo) == url


@pytest.mark.parametrize(
    ("dsn", "words"),
    [
        ("host=h port=abc", "port that is not a number"),
        ("postgresql://u@h:abc/d", "port that is not a number"),
        ("host=h 'oops'", "cannot be read at character"),
        ("Hunter2-s3cret", "neither a URL"),
    ],
)
def test_unusable_dsns_are_config_errors_that_do_not_repeat_them(dsn: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        to_url(dsn)
    assert "Hunter2" not in str(caught.value)


def test_passwords_in_finds_every_printable_form() -> None:
    assert {"Wrong@Pass99"} <= passwords_in("postgresql://u:Wrong@Pass99@host/db")
    assert {"a%40b", "a@b"} <= passwords_in("postgresql://u:a%40b@h/d")
    assert {"s3cret"} <= passwords_in("postgresql://u@h/d?sslmode=disable&password=s3cret")
    assert {"a b'c"} <= passwords_in("host=h password='a b\\'c'")
    assert passwords_in("postgresql://u@h:5432/d") == set()
    assert redact("postgresql://u:Wrong@Pass99@host/db x") == "postgresql://u:***@host/db x"
