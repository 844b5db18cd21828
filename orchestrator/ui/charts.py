"""Charts as geometry for SVG templates: a step's hour (bars and percentile lines) and a
run's timeline (a Gantt-like row per message). Numbers in, rectangles and points out; the
templates draw them with every label escaped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.ops.steps import Bucket
from orchestrator.ops.trace import TraceEntry

WIDTH = 720
HEIGHT = 160
LABEL = 48
"""Left margin for the axis labels."""


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Series:
    name: str
    points: str
    """SVG polyline points, 'x,y x,y ...'."""


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    top: str
    """Label of the top of the y axis."""
    bars: tuple[Bar, ...] = ()
    series: tuple[Series, ...] = ()


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _slots(since: datetime, minutes: int) -> list[datetime]:
    first = _minute(since) + timedelta(minutes=1)
    return [first + timedelta(minutes=i) for i in range(minutes)]


def throughput(buckets: Sequence[Bucket], since: datetime, minutes: int = 60) -> Chart:
    """Hand-offs per minute as bars."""
    counts = {_minute(b.start): b.handed_off for b in buckets}
    slots = _slots(since, minutes)
    top = max([*counts.values(), 1])
    step = (WIDTH - LABEL) / len(slots)
    bars = []
    for i, slot in enumerate(slots):
        count = counts.get(slot, 0)
        height = (HEIGHT - 10) * count / top
        bars.append(
            Bar(
                LABEL + i * step + 1,
                HEIGHT - height,
                max(step - 2, 1),
                height,
                f"{slot:%H:%M} UTC: {count} handed off",
            )
        )
    return Chart(WIDTH, HEIGHT, f"{top}/min", bars=tuple(bars))


def latency(buckets: Sequence[Bucket], since: datetime, minutes: int = 60) -> Chart:
    """p50 and p95 of enqueue-to-start and handler time per minute, as lines (seconds)."""
    slots = {s: i for i, s in enumerate(_slots(since, minutes))}
    fields = ("wait_p50", "wait_p95", "run_p50", "run_p95")
    top = max([getattr(b, f) or 0.0 for b in buckets for f in fields] + [0.001])
    step = (WIDTH - LABEL) / minutes
    series = []
    for name in fields:
        points = []
        for b in buckets:
            index = slots.get(_minute(b.start))
            value = getattr(b, name)
            if index is None or value is None:
                continue
            x = LABEL + index * step + step / 2
            points.append(f"{x:.1f},{HEIGHT - (HEIGHT - 10) * value / top:.1f}")
        series.append(Series(name, " ".join(points)))
    return Chart(WIDTH, HEIGHT, _seconds(top), series=tuple(series))


@dataclass(frozen=True)
class TimelineRow:
    entry: TraceEntry
    y: float
    wait: Bar | None
    run: Bar | None


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    label: int
    span: str
    rows: tuple[TimelineRow, ...]


ROW = 26
TIMELINE_LABEL = 200


def timeline(entries: Sequence[TraceEntry], now: datetime) -> Timeline:
    """One row per message: waiting (sent -> started) and running (started -> finished)."""
    moments = [m for e in entries for m in (e.sent, e.started, e.finished) if m is not None]
    start = min(moments, default=now)
    end = max([*moments, start + timedelta(milliseconds=1)])
    if any(e.finished is None for e in entries):
        end = max(end, now)
    total = (end - start).total_seconds() or 0.001
    scale = (WIDTH - TIMELINE_LABEL) / total

    def x(moment: datetime) -> float:
        return TIMELINE_LABEL + (moment - start).total_seconds() * scale

    rows = []
    for i, entry in enumerate(entries):
        y = i * ROW + 4
        sent = entry.sent or entry.started or entry.finished or start
        dead = entry.state == "dead letter" and entry.started is None
        began = sent if dead else (entry.started or entry.finished or now)
        ended = entry.finished or now
        label = "sent until dead-lettered:" if dead else "ran"
        wait = Bar(x(sent), y, max(x(began) - x(sent), 1), ROW - 8, f"waited {_gap(sent, began)}")
        run = (
            Bar(x(began), y, max(x(ended) - x(began), 2), ROW - 8, f"{label} {_gap(began, ended)}")
            if entry.started is not None or dead
            else None
        )
        rows.append(TimelineRow(entry, y, wait, run))
    return Timeline(WIDTH, len(rows) * ROW + 8, TIMELINE_LABEL, _seconds(total), tuple(rows))


def _gap(first: datetime, last: datetime) -> str:
    return _seconds(max((last - first).total_seconds(), 0.0))


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"
