"""Where the database is, in which form, and how to say it without its password.

Resolution: `--dsn`, else `ORCHESTRATOR_DSN`, else `DATABASE_URL`, else the embedded server.
A DSN is a URL (`postgresql://user:pw@host:5432/db?sslmode=require`) or a libpq connection
string (`host=db port=5432 dbname=app user=app password='a b'`), as psql and asyncpg users
write them; the second form is turned into the first, which is what the driver takes.

Passwords never reach a screen: `redact` hides them in any text (URL and key=value forms, a
password holding an unescaped `@` included), and `passwords_in` finds them in a DSN so that
the CLI can scrub its whole output of them, whatever else happens to quote them.
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote, unquote, urlencode, urlsplit

from orchestrator.errors import ConfigError

DSN_VARIABLES = ("ORCHESTRATOR_DSN", "DATABASE_URL")
"""Environment variables naming the database, first set wins."""

_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
# `scheme://user:PASSWORD@host`: the password runs to the last `@` of the word.
_PASSWORD_IN_URL = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>\S*?)(?=@[^@\s]*(?:\s|$))", re.I
)
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&]password=)(?P<pw>[^&\s]*)", re.I)
_PASSWORD_KV = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'?|[^\s&]+)", re.I)
_KV_PAIR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)*)")
# libpq keywords that are part of a URL's netloc or path; the others become query parameters.
_NETLOC_KEYS = ("host", "port", "user", "password", "dbname")


def resolve_dsn(explicit: str | None = None, *, start_embedded: bool = True) -> str:
    """The database URL to use; starts the embedded server when nothing else is configured."""
    given = explicit or next((os.environ[v] for v in DSN_VARIABLES if os.environ.get(v)), None)
    if given:
        return to_url(given)
    if not start_embedded:
        raise ConfigError("no database: pass --dsn or set ORCHESTRATOR_DSN or DATABASE_URL")
    from orchestrator.db import embedded

    return embedded.ensure_running()


def to_url(dsn: str) -> str:
    """`dsn` as a URL the driver takes: a URL is checked, a key=value string converted.

    Anything else is a `ConfigError` that does not repeat the text (it may be a password).
    """
    text = dsn.strip()
    if _URL.match(text):
        try:
            netloc = urlsplit(text).netloc
        except ValueError as exc:  # e.g. an unclosed [ of an IPv6 address
            raise ConfigError(f"the database URL cannot be read: {exc}") from None
        _check_port(netloc.rpartition("@")[2])
        return text
    if "=" in text:
        return _url_of(parse_conninfo(text))
    raise ConfigError(
        "the database DSN is neither a URL (postgresql://user@host/db) "
        "nor a key=value string (host=... dbname=...)"
    )


def parse_conninfo(text: str) -> dict[str, str]:
    """The keywords of a libpq `key=value` connection string (values unquoted)."""
    found: dict[str, str] = {}
    position = 0
    while position < len(text.rstrip()):
        match = _KV_PAIR.match(text, position)
        if match is None or match.end() == position:
            raise ConfigError(
                f"the key=value DSN cannot be read at character {position + 1} "
                "(write key=value pairs separated by spaces; quote values with spaces as 'a b')"
            )
        found[match.group(1).lower()] = _unquote_value(match.group(2))
        position = match.end()
    return found


def _unquote_value(raw: str) -> str:
    if raw.startswith("'"):
        raw = raw[1:-1]
    return re.sub(r"\\(.)", r"\1", raw)


def _url_of(keys: dict[str, str]) -> str:
    user = quote(keys.get("user", ""), safe="")
    password = keys.get("password")
    auth = f"{user}:{quote(password, safe='')}@" if password is not None else (user and user + "@")
    hosts = keys.get("host", "")
    extra = {k: v for k, v in keys.items() if k not in _NETLOC_KEYS}
    if hosts.startswith("/"):  # a Unix-socket directory goes as a parameter
        extra["host"], hosts = hosts, ""
    netloc = _netloc(hosts, keys.get("port", ""))
    query = f"?{urlencode(extra)}" if extra else ""
    return f"postgresql://{auth}{netloc}/{quote(keys.get('dbname', ''), safe='')}{query}"


def _netloc(hosts: str, ports: str) -> str:
    host_list = hosts.split(",") if hosts else [""]
    port_list = ports.split(",") if ports else []
    for port in port_list:
        _check_port(f":{port}")
    if len(port_list) == 1:
        port_list = port_list * len(host_list)
    pairs = zip(host_list, port_list + [""] * len(host_list), strict=False)
    return ",".join(f"{_bracket(h)}:{p}" if p else _bracket(h) for h, p in pairs)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _check_port(hostports: str) -> None:
    """Each `host:port` of a netloc has a numeric port (asyncpg would say `int()`'s error)."""
    for part in hostports.split(","):
        port = part.rpartition("]")[2].rpartition(":")[2] if ":" in part else ""
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(
                "the database DSN has a port that is not a number from 1 to 65535"
                + (f": {port!r}" if len(port) <= 6 and port.isalnum() else "")
            )


def passwords_in(text: str) -> set[str]:
    """Every password `text` carries in a DSN, in the forms it could be printed in."""
    found = {m.group("pw") for m in _PASSWORD_IN_URL.finditer(text)}
    found |= {m.group("pw") for m in _PASSWORD_IN_QUERY.finditer(text)}
    found |= {m.group("pw") for m in _PASSWORD_KV.finditer(text)}
    forms = set()
    for password in found:
        forms |= {password, password.strip("'"), unquote(password), _unquote_value(password)}
    return {p for p in forms if p}


def redact(text: str) -> str:
    """Hide passwords in DSNs (URL and key=value forms) found anywhere in `text`."""
    text = _PASSWORD_IN_URL.sub(lambda m: m.group("head") + ("***" if m.group("pw") else ""), text)
    text = _PASSWORD_IN_QUERY.sub(lambda m: m.group("head") + "***", text)
    return _PASSWORD_KV.sub(lambda m: m.group("head") + "***", text)
