"""Plain-text building blocks for the operations' output: tables, colour, human units.

Colour is ANSI and only used when the output is a terminal (and `NO_COLOR` is not set), so
piped output and files stay clean. Cells carry a style name; `table` measures widths on the
text without escape codes, so coloured columns still line up.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO

_STYLES = {
    "red": "31",
    "yellow": "33",
    "green": "32",
    "bold": "1",
    "dim": "2",
}


def colour_enabled(stream: IO[str]) -> bool:
    """True when ANSI colour is welcome on `stream`: a terminal, NO_COLOR unset, TERM not dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def paint(text: str, style: str | None, colour: bool) -> str:
    """`text` in `style` (red, yellow, green, bold, dim) when `colour` is on."""
    if not colour or not style or not text:
        return text
    return f"\x1b[{_STYLES[style]}m{text}\x1b[0m"


@dataclass(frozen=True)
class Cell:
    """A table cell: its text and an optional style (used only when colour is on)."""

    text: str
    style: str | None = None


CellLike = Cell | str


def _cell(value: CellLike) -> Cell:
    return value if isinstance(value, Cell) else Cell(value)


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[CellLike]],
    *,
    right: Sequence[int] = (),
    colour: bool = False,
    indent: str = "",
) -> str:
    """Rows under headers, columns padded to their widest cell; `right` aligns columns right."""
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c.text))
    lines = [_line([Cell(h, "bold") for h in headers], widths, right, colour, indent)]
    lines += [_line(row, widths, right, colour, indent) for row in cells]
    return "\n".join(lines)


def fit_columns(
    headers: Sequence[str],
    rows: Sequence[Sequence[CellLike]],
    width: int | None,
    droppable: Sequence[int],
    *,
    indent: int = 0,
) -> tuple[list[str], list[list[CellLike]], list[int]]:
    """The columns of a table that fit in `width` characters, dropping those of `droppable` in
    that order until they do; returns the headers, rows and the indexes kept."""
    kept = list(range(len(headers)))
    for column in [None, *droppable]:
        if column is not None:
            kept.remove(column)
        widths = [max([len(headers[i])] + [len(_cell(r[i]).text) for r in rows]) for i in kept]
        if width is None or indent + sum(widths) + 2 * (len(kept) - 1) <= width:
            break
    return [headers[i] for i in kept], [[r[i] for i in kept] for r in rows], kept


def _line(
    row: Sequence[Cell], widths: Sequence[int], right: Sequence[int], colour: bool, indent: str
) -> str:
    parts = []
    for i, c in enumerate(row):
        pad = " " * (widths[i] - len(c.text))
        text = paint(c.text, c.style, colour)
        parts.append(pad + text if i in right else text + pad)
    return (indent + "  ".join(parts)).rstrip()


def age(seconds: float | None) -> str:
    """Compact age: 42s, 5m10s, 2h03m, 3d04h; '-' for None."""
    if seconds is None:
        return "-"
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def size(count: int | None) -> str:
    """Bytes as 512 B, 48.0 kB, 1.2 MB, 340 GB."""
    if count is None:
        return "-"
    units = ("B", "kB", "MB", "GB", "TB")
    value, unit = float(count), 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{int(value)} B"
    return f"{value:.0f} {units[unit]}" if value >= 100 else f"{value:.1f} {units[unit]}"


def percent(share: float | None) -> str:
    """0.234 -> '23%'; '-' for None."""
    return "-" if share is None else f"{share * 100:.0f}%"


def timestamp(moment: datetime | str | None) -> str:
    """Local wall-clock time with milliseconds, e.g. 2024-05-01 14:03:07.123: the one format of
    every time the commands print (an ISO text, as headers carry them, is read first)."""
    if isinstance(moment, str):
        try:
            return timestamp(datetime.fromisoformat(moment))
        except ValueError:
            return moment
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def count(number: int, noun: str, plural: str | None = None) -> str:
    """'1 dead letter', '3 dead letters'."""
    return f"{number} {noun if number == 1 else (plural or noun + 's')}"


def shorten(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"
