"""Progress of long operations (bulk sends, replays, purges, drains).

On a terminal a bar is redrawn in place on one line; anywhere else (logs, CI, pipes) a plain
line is written every few seconds, so output stays readable and grep-able. Progress goes to
stderr by default, keeping stdout for data (`--json`).

    with Progress("replay", total=len(ids)) as progress:
        for chunk in chunks:
            ...
            progress.advance(len(chunk))
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO

REDRAW = 0.1
"""Seconds between two redraws of the bar on a terminal."""

LINE_EVERY = 5.0
"""Seconds between two plain progress lines when not on a terminal."""


class Progress:
    """Counts work done towards an optional total and shows it (see the module docstring)."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: IO[str] | None = None,
        interactive: bool | None = None,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        width: int | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.detail = ""
        """Text shown after the counts (what is left where, say)."""
        self._stream = stream if stream is not None else sys.stderr
        if interactive is None:
            isatty = getattr(self._stream, "isatty", None)
            interactive = bool(isatty and isatty())
        self.interactive = interactive
        self._every = every if every is not None else (REDRAW if interactive else LINE_EVERY)
        self._clock = clock
        self._width = width
        self._started = clock()
        self._shown_at = self._started
        self._lines = 0
        self._finished = False

    def advance(self, count: int = 1) -> None:
        """Record `count` more units of work done."""
        self.update(self.done + count)

    def update(self, done: int) -> None:
        """Record that `done` units are done in total."""
        self.done = done
        now = self._clock()
        if now - self._shown_at >= self._every:
            self._shown_at = now
            self._show(now)

    def finish(self) -> None:
        """Show the final state (a bar is completed and ends its line). Idempotent."""
        if self._finished:
            return
        self._finished = True
        now = self._clock()
        if self.interactive:
            self._write("\r" + self._bar(now) + "\x1b[K\n")
        elif self._lines:
            self._write(f"{self.label}: {self._count()} done in {now - self._started:.1f}s\n")

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish()

    def _show(self, now: float) -> None:
        if self.interactive:
            self._write("\r" + self._bar(now) + "\x1b[K")
        else:
            self._lines += 1
            line = f"{self.label}: {self._count()}{self._percent()}{self._rate(now)}{self.detail}"
            self._write(line + "\n")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()

    def _count(self) -> str:
        return f"{self.done}/{self.total}" if self.total is not None else str(self.done)

    def _percent(self) -> str:
        if not self.total:
            return ""
        return f" ({min(100, self.done * 100 // self.total)}%)"

    def _rate(self, now: float) -> str:
        elapsed = now - self._started
        if elapsed <= 0 or not self.done:
            return ""
        rate = self.done / elapsed
        text = f", {rate:.0f}/s"
        if self.total and self.done < self.total:
            text += f", {(self.total - self.done) / rate:.0f}s left"
        return text

    def _bar(self, now: float) -> str:
        tail = f" {self._count()}{self._percent()}{self._rate(now)}{self.detail}"
        if not self.total:
            return f"{self.label}:{tail}"
        columns = self._width or shutil.get_terminal_size((80, 24)).columns
        room = max(10, min(40, columns - len(self.label) - len(tail) - 4))
        filled = min(room, room * self.done // self.total)
        return f"{self.label} [{'#' * filled}{'.' * (room - filled)}]{tail}"


def progress_callback(progress: Progress | None) -> Callable[[int], None]:
    """`progress.advance`, or a function that does nothing when there is no progress to show."""
    return progress.advance if progress is not None else _ignore


def _ignore(count: int) -> None:
    del count
