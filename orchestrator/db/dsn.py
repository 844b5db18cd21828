"""Where the database is: `--dsn`, else `DATABASE_URL`, else the embedded server."""

from __future__ import annotations

import os
import re

_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?=@)", re.I)
_PASSWORD_KV = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|\S+)", re.I)


def resolve_dsn(explicit: str | None = None, *, start_embedded: bool = True) -> str:
    """Return the DSN to use; starts the embedded server when nothing else is configured."""
    if explicit:
        return explicit
    env = os.environ.get("DATABASE_URL")
    if env:
        return env
    if not start_embedded:
        from orchestrator.errors import ConfigError

        raise ConfigError("no database: pass --dsn or set DATABASE_URL")
    from orchestrator.db import embedded

    return embedded.ensure_running()


def redact(text: str) -> str:
    """Hide passwords in DSNs (URL and key=value forms) found anywhere in `text`."""
    text = _PASSWORD_IN_URL.sub(lambda m: m.group("head") + ("***" if m.group("pw") else ""), text)
    return _PASSWORD_KV.sub(lambda m: m.group("head") + "***", text)
