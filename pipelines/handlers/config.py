"""Settings of the work-order handlers, read from environment variables at each use.

Reading at use (not at import) lets a worker pick up the environment it was started with, and
lets tests point the handlers at local stand-ins. Every variable is documented in
docs/configuration.md. A missing or malformed value raises `SettingsError` naming the variable;
the handlers turn it into a permanent failure, because retrying cannot fix the configuration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class SettingsError(Exception):
    """An environment variable the handlers need is missing or malformed."""


@dataclass(frozen=True)
class SapSettings:
    url: str
    timeout: float
    token: str | None


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    user: str | None
    password: str | None
    starttls: bool
    timeout: float


@dataclass(frozen=True)
class ReportSettings:
    timezone: str
    recipients: tuple[str, ...]


def _text(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def _required(name: str, what: str) -> str:
    value = _text(name)
    if value is None:
        raise SettingsError(f"{name} is not set ({what})")
    return value


def _seconds(name: str, default: float) -> float:
    raw = _text(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise SettingsError(f"{name} must be a number of seconds above 0, got {raw!r}")
    return value


def _port(name: str, default: int) -> int:
    raw = _text(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SettingsError(f"{name} must be a TCP port (1-65535), got {raw!r}")
    return int(raw)


def _flag(name: str) -> bool:
    raw = (_text(name) or "0").lower()
    if raw not in {"0", "1", "true", "false", "yes", "no"}:
        raise SettingsError(f"{name} must be 0 or 1, got {raw!r}")
    return raw in {"1", "true", "yes"}


def _addresses(name: str) -> tuple[str, ...]:
    raw = _text(name) or ""
    found = tuple(a.strip() for a in raw.split(",") if a.strip())
    for address in found:
        if "@" not in address or any(c.isspace() for c in address):
            raise SettingsError(f"{name}: {address!r} is not an e-mail address")
    return found


def sap() -> SapSettings:
    """ORCHESTRATOR_SAP_URL (required), ORCHESTRATOR_SAP_TIMEOUT, ORCHESTRATOR_SAP_TOKEN."""
    url = _required("ORCHESTRATOR_SAP_URL", "the SAP endpoint work orders are posted to")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise SettingsError(f"ORCHESTRATOR_SAP_URL must be an http(s) URL, got {url!r}")
    return SapSettings(
        url=url,
        timeout=_seconds("ORCHESTRATOR_SAP_TIMEOUT", 10.0),
        token=_text("ORCHESTRATOR_SAP_TOKEN"),
    )


def smtp() -> SmtpSettings:
    """ORCHESTRATOR_SMTP_* : server, sender, default recipients, optional login and STARTTLS."""
    user = _text("ORCHESTRATOR_SMTP_USER")
    return SmtpSettings(
        host=_required("ORCHESTRATOR_SMTP_HOST", "the SMTP server mails are sent through"),
        port=_port("ORCHESTRATOR_SMTP_PORT", 25),
        sender=_text("ORCHESTRATOR_SMTP_FROM", "orchestrator@localhost") or "",
        recipients=_addresses("ORCHESTRATOR_SMTP_TO"),
        user=user,
        password=os.environ.get("ORCHESTRATOR_SMTP_PASSWORD") if user else None,
        starttls=_flag("ORCHESTRATOR_SMTP_STARTTLS"),
        timeout=_seconds("ORCHESTRATOR_SMTP_TIMEOUT", 10.0),
    )


def timezone_name(raw: str, source: str) -> str:
    """`raw` if it names an IANA time zone; SettingsError mentioning `source` otherwise."""
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{source}: unknown time zone {raw!r}") from None
    return raw


def report() -> ReportSettings:
    """ORCHESTRATOR_REPORT_TIMEZONE (default UTC) and ORCHESTRATOR_REPORT_TO (else SMTP_TO)."""
    zone = _text("ORCHESTRATOR_REPORT_TIMEZONE", "UTC") or "UTC"
    recipients = _addresses("ORCHESTRATOR_REPORT_TO") or _addresses("ORCHESTRATOR_SMTP_TO")
    return ReportSettings(
        timezone=timezone_name(zone, "ORCHESTRATOR_REPORT_TIMEZONE"), recipients=recipients
    )
