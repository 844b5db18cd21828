"""Everything the CLI writes goes through here: no password reaches a screen.

`secrets_of` collects the passwords carried by the command line and the DSN variables, in every
form they could be printed in (as given, percent-decoded, unquoted); `Scrubbed` wraps stdout and
stderr and replaces each of them with `***`, so no message, usage error or library error can
show one, whatever its author forgot to redact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import IO, Any

from orchestrator.db.dsn import DSN_VARIABLES, passwords_in

MIN_SECRET = 3
"""Shorter passwords are not scrubbed: replacing every 'a' would garble all output."""


def secrets_of(arguments: Iterable[str], environ: Mapping[str, str]) -> tuple[str, ...]:
    """The passwords in `arguments` and in the DSN variables, longest first."""
    found: set[str] = set()
    for text in [*arguments, *(environ.get(v, "") for v in DSN_VARIABLES)]:
        found |= passwords_in(text)
    return tuple(sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True))


class Scrubbed:
    """A text stream that writes to `stream` with every secret replaced by `***`."""

    def __init__(self, stream: IO[str], secrets: tuple[str, ...]) -> None:
        self._stream = stream
        self._secrets = secrets

    def write(self, text: str) -> int:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return self._stream.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
