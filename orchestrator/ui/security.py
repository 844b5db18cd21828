"""Who may act (replay, purge) and the CSRF check every form goes through.

- `--read-only` (`read_only=True`) removes every action: no form is rendered and every POST
  that would change something is refused.
- With a token (`ORCHESTRATOR_UI_TOKEN`) or users (`ORCHESTRATOR_UI_USERS`,
  `name:password[,name:password...]`) configured, an action needs credentials: an
  `Authorization: Bearer <token>` header, Basic auth of a configured user, or the session
  cookie that the sign-in form sets after checking the token.
- With neither configured, actions are allowed only to a server bound to loopback (the CLI
  passes its bind address; a mounted application judges by the client's address).
- Every form carries a CSRF token equal to a random cookie (SameSite=Strict); a POST whose
  field and cookie differ is refused before anything is read from it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
from dataclasses import dataclass, field

from starlette.requests import Request

CSRF_COOKIE = "orchestrator_csrf"
SESSION_COOKIE = "orchestrator_session"


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_users(text: str | None) -> dict[str, str]:
    """`name:password,name:password` as a mapping (entries without a colon are ignored)."""
    users = {}
    for entry in (text or "").split(","):
        name, colon, password = entry.strip().partition(":")
        if colon and name:
            users[name] = password
    return users


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


@dataclass
class Guard:
    """The dashboard's access rules (see the module docstring)."""

    read_only: bool = False
    token: str | None = None
    users: dict[str, str] = field(default_factory=dict)
    loopback: bool | None = None
    """The server is bound to loopback (None: judge each request by its client address)."""
    secret: bytes = field(default_factory=lambda: os.urandom(32))

    @classmethod
    def from_environment(cls, *, read_only: bool, loopback: bool | None) -> Guard:
        return cls(
            read_only=read_only,
            token=os.environ.get("ORCHESTRATOR_UI_TOKEN") or None,
            users=parse_users(os.environ.get("ORCHESTRATOR_UI_USERS")),
            loopback=loopback,
        )

    @property
    def needs_credentials(self) -> bool:
        return bool(self.token or self.users)

    def may_act(self, request: Request) -> Decision:
        """May this request replay or purge?"""
        if self.read_only:
            return Decision(False, "this dashboard is read-only (--read-only)")
        if self.needs_credentials:
            if self._authenticated(request):
                return Decision(True)
            return Decision(False, "this action needs the dashboard token: sign in first")
        local = self.loopback
        if local is None:
            local = is_loopback(request.client.host if request.client else None)
        if local:
            return Decision(True)
        return Decision(
            False,
            "actions off loopback need ORCHESTRATOR_UI_TOKEN or ORCHESTRATOR_UI_USERS",
        )

    def session_value(self) -> str:
        """The session cookie's value once the token was given."""
        return hmac.new(self.secret, b"signed in", hashlib.sha256).hexdigest()

    def token_matches(self, given: str) -> bool:
        if self.token and hmac.compare_digest(given.encode(), self.token.encode()):
            return True
        name, colon, password = given.partition(":")
        known = self.users.get(name)
        return bool(colon and known is not None and hmac.compare_digest(password, known))

    def _authenticated(self, request: Request) -> bool:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if cookie and hmac.compare_digest(cookie, self.session_value()):
            return True
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token:
            return hmac.compare_digest(value.strip().encode(), self.token.encode())
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return False
            return self.token_matches(decoded) if ":" in decoded else False
        return False


def csrf_token(request: Request) -> tuple[str, bool]:
    """The request's CSRF token and whether it is new (then the response must set it)."""
    known = request.cookies.get(CSRF_COOKIE)
    if known and len(known) == 64:
        return known, False
    return secrets.token_hex(32), True


def csrf_ok(request: Request, submitted: object) -> bool:
    """The form's token equals the cookie's."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return (
        isinstance(submitted, str)
        and len(cookie) == 64
        and hmac.compare_digest(submitted.encode(), cookie.encode())
    )
