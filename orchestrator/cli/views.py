"""Text views of the operations' reports, for people at a terminal (`--json` is for programs).

Each function returns the text to print; colour (ANSI) is applied only when `colour` is true,
and only where something needs attention.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from orchestrator.cli.format import (
    Cell,
    age,
    count,
    fit_columns,
    paint,
    percent,
    shorten,
    size,
    table,
    timestamp,
)
from orchestrator.ops.dlq import DeadLetter, ReplayReport
from orchestrator.ops.flow import StepFlow
from orchestrator.ops.maintain import MaintainReport
from orchestrator.ops.schedules import NextTick
from orchestrator.ops.status import (
    DEAD_TUPLE_ALERT,
    DEAD_TUPLE_MIN,
    JoinWaiting,
    PipelineStatus,
    StatusReport,
    StepStatus,
)
from orchestrator.ops.trace import Trace, TraceEntry
from orchestrator.spec.durations import format_duration

_STATUS_HEADERS = (
    "step",
    "waiting",
    "visible",
    "in flight",
    "retrying",
    "delayed",
    "oldest",
    "handed off",
    "failures",
    "DLQ",
    "size",
    "dead",
)


_DROPPED_FIRST = (10, 11, 2, 5, 4, 3)
"""Status columns left out, in this order, when the table is wider than the terminal:
size, dead, visible, delayed, retrying, in flight (waiting, oldest and failures stay)."""


def status_text(report: StatusReport, *, colour: bool = False, width: int | None = None) -> str:
    """One block per pipeline: a header line, a row per step, dead letters and schedules.
    With `width`, columns are left out (see `_DROPPED_FIRST`) until each table fits."""
    if not report.pipelines:
        return "no pipelines applied yet (run `orchestrator apply`)"
    window = format_duration(report.window)
    blocks = [_pipeline_block(p, report, window, colour, width) for p in report.pipelines]
    blocks += [
        paint("warning: " + h.describe(report.measured_at), "yellow", colour)
        for h in report.horizon
    ]
    legend = (
        "waiting = visible + in flight + retrying + delayed; handed off and failures (failed "
        f"attempts): last {window}; dead: share of dead tuples in the queue table (shown from "
        f"{DEAD_TUPLE_MIN} dead tuples on, when autovacuum would start)"
    )
    if width is not None and any(_fit(p, window, width)[2] != _ALL for p in report.pipelines):
        legend += "; columns left out to fit the terminal: --wide shows all"
    return "\n\n".join(blocks) + "\n\n" + paint(legend, "dim", colour)


_ALL = list(range(len(_STATUS_HEADERS)))


def _fit(
    p: PipelineStatus, window: str, width: int | None
) -> tuple[list[str], list[list[Cell]], list[int]]:
    headers = list(_STATUS_HEADERS)
    headers[7] = f"handed off/{window}"
    headers[8] = f"failures/{window}"
    rows = [_step_row(s) for s in p.steps]
    fitted, kept_rows, kept = fit_columns(headers, rows, width, _DROPPED_FIRST, indent=2)
    return fitted, [[_cell_of(c) for c in r] for r in kept_rows], kept


def _cell_of(value: Cell | str) -> Cell:
    return value if isinstance(value, Cell) else Cell(value)


def _pipeline_block(
    p: PipelineStatus, report: StatusReport, window: str, colour: bool, width: int | None
) -> str:
    head = paint(p.name, "bold", colour) + f"  (applied {timestamp(p.applied_at)[:16]})"
    if p.changed:
        head += "  " + paint(
            "pipeline file changed since apply: run `orchestrator apply`", "yellow", colour
        )
    headers, rows, kept = _fit(p, window, width)
    right = [i for i, column in enumerate(kept) if column >= 1]
    lines = [head, table(headers, rows, right=right, colour=colour, indent="  ")]
    lines.append("  " + _dead_letter_line(p, colour))
    lines += ["  " + _flow_line(f, colour) for f in p.flow]
    if p.cancelled_runs:
        lines.append(f"  cancelled runs: {p.cancelled_runs}")
    lines += ["  " + _join_line(j) for j in p.joins]
    if p.subscriptions or p.published:
        lines.append("  " + _topics_line(p))
    lines += ["  " + _schedule_line(t, report.measured_at, colour) for t in p.schedules]
    return "\n".join(lines)


def _topics_line(p: PipelineStatus) -> str:
    parts = [f"subscribes to {', '.join(p.subscriptions)}"] if p.subscriptions else []
    parts += [f"{step} publishes {', '.join(keys)}" for step, keys in p.published]
    return "topics: " + "; ".join(parts)


def _step_row(s: StepStatus) -> list[Cell]:
    n = s.numbers
    if n is None:
        return [Cell(s.step, "red"), Cell("queue missing", "red"), *[Cell("")] * 10]
    few = 0 < n.dead_tuples < DEAD_TUPLE_MIN  # a share of a handful of tuples says nothing
    share = None if few else n.dead_tuple_share
    old = n.oldest_age is not None and n.oldest_age > s.visibility_timeout
    return [
        Cell(s.step),
        Cell(str(n.waiting)),
        Cell(str(n.visible)),
        Cell(str(n.in_flight)),
        Cell(str(n.retrying), "yellow" if n.retrying else None),
        Cell(str(n.delayed)),
        Cell(age(n.oldest_age), "yellow" if old else None),
        Cell("n/a" if s.handed_off is None else str(s.handed_off)),
        Cell(str(s.failures), "yellow" if s.failures else None),
        Cell(str(s.dead_letters), "red" if s.dead_letters else None),
        Cell(size(n.table_bytes)),
        Cell(percent(share), "yellow" if share is not None and share > DEAD_TUPLE_ALERT else None),
    ]


def _join_line(j: JoinWaiting) -> str:
    text = f"join {j.step}: {count(j.waiting, 'run')} waiting"
    if j.oldest_age is None:
        return text
    return text + f", oldest {age(j.oldest_age)} (deleted after {format_duration(j.retention)})"


def _flow_line(f: StepFlow, colour: bool) -> str:
    text = "flow " + f.describe()
    return paint(text, "yellow", colour) if f.paused_since is not None else text


def _dead_letter_line(p: PipelineStatus, colour: bool) -> str:
    total = p.dead_letters
    text = f"dead letters ({p.dead_letter_queue}): {total}"
    if total:
        text = paint(text, "red", colour)
        parts = ", ".join(f"{step} {n}" for step, n in sorted(p.dead_letter_steps.items()))
        text += f" ({parts}; see `orchestrator dlq list {p.name}`)"
    if p.dead_letter_numbers is None:
        text += " " + paint("(queue missing)", "red", colour)
    return text


def _schedule_line(tick: NextTick, now: datetime, colour: bool) -> str:
    when = tick.next_tick
    delta = (when - now).total_seconds()
    relative = f"in {age(delta)}" if delta >= 0 else f"{age(-delta)} ago"
    text = (
        f"schedule {tick.schedule} ({tick.cron}, {tick.timezone}): next tick "
        f"{when.strftime('%Y-%m-%d %H:%M %Z')} ({relative})"
    )
    if tick.overdue(now):
        text += " " + paint("overdue: is a worker running?", "yellow", colour)
    elif not tick.recorded:
        text += paint(" (no worker has seen this schedule yet)", "dim", colour)
    return text


def dead_letters_text(pipeline: str, letters: Sequence[DeadLetter], *, total: int) -> str:
    """A table of dead letters, with a line saying how many were left out."""
    if not letters:
        return f"no dead letters in {pipeline}"
    rows = [
        [
            str(d.id),
            d.step or "?",
            d.run_id or "-",
            "-" if d.attempts is None else str(d.attempts),
            timestamp(d.failed_at or d.entered_at),
            shorten(d.error, 70),
        ]
        for d in letters
    ]
    text = table(("id", "step", "run", "attempts", "failed", "error"), rows, right=(0, 3))
    if total > len(letters):
        text += f"\n{len(letters)} of {total} shown (newest first); use --limit to see more"
    return text


def dead_letter_text(d: DeadLetter) -> str:
    """Everything about one dead letter: where, when, the error with its traceback, payload."""
    import orjson

    def pretty(value: object) -> str:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()

    lines = [
        f"dead letter {d.id} of pipeline {d.pipeline}",
        f"  step:       {d.step or '?'} (queue {d.queue or '?'}, message {d.msg_id or '?'})",
        f"  run:        {d.run_id or '-'}",
        f"  attempts:   {'-' if d.attempts is None else d.attempts}"
        + ("  (permanent failure: not retried)" if d.permanent else ""),
        f"  failed at:  {timestamp(d.failed_at or d.entered_at)}",
        f"  error:      {d.error}",
    ]
    for e in d.errors:
        if isinstance(e, dict):
            lines.append(
                f"  attempt {e.get('attempt', '?')}:  {timestamp(e.get('at'))}  "
                f"{e.get('type', '?')}: {shorten(str(e.get('message', '')), 100)}"
            )
    if d.traceback:
        lines += ["", "traceback:", d.traceback.rstrip()]
    lines += ["", "payload:", pretty(d.payload), "", "headers:", pretty(d.headers)]
    return "\n".join(lines)


def replay_text(report: ReplayReport) -> str:
    """How many were replayed (per step), what stayed and why, which ids were not found."""
    done = len(report.replayed)
    line = f"replayed {count(done, 'dead letter')} of {report.pipeline}"
    if done:
        line += " (" + ", ".join(f"{s}: {n}" for s, n in sorted(report.by_step().items())) + ")"
    lines = [line]
    reasons: dict[str, list[int]] = {}
    for item in report.left:
        reasons.setdefault(f"{item.outcome} '{item.step}'", []).append(item.dead_letter_id)
    for reason, ids in sorted(reasons.items()):
        lines.append(f"left {count(len(ids), 'dead letter')} in place: {reason} (ids {_ids(ids)})")
    if report.missing_ids:
        lines.append(
            "not in the dead-letter queue (already replayed or purged?): "
            + _ids(report.missing_ids)
        )
    return "\n".join(lines)


def _ids(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:20])
    return shown + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")


def trace_text(trace: Trace, *, colour: bool = False) -> str:
    """The run's messages in time order, their errors, and the joins still waiting."""
    start = min((e.sent for e in trace.entries if e.sent), default=None)
    state_style = {
        "done": "green",
        "failed": "red",
        "running": "yellow",
        "waiting": "yellow",
        "unknown": "yellow",
        "cancelled": "red",
    }
    head = (
        f"run {trace.run_id}  "
        + paint(trace.state, state_style.get(trace.state), colour)
        + f"  pipeline {', '.join(trace.pipelines)}"
        + (f"  started {timestamp(start)}" if start else "")
    )
    rows = [_trace_row(e, start) for e in trace.entries]
    lines = [head]
    origin = trace.published
    if origin is not None:
        lines.append(
            f"  published as {origin.get('topic')} by {origin.get('pipeline')}."
            f"{origin.get('step')} (run {origin.get('run_id')}, msg {origin.get('msg_id')})"
        )
    if trace.cancelled is not None:
        c = trace.cancelled
        lines.append(
            "  "
            + paint("cancelled", "red", colour)
            + f" {timestamp(c.at)} by {c.by} ({c.removed} waiting message(s) removed)"
        )
    if rows:
        headers = ("step", "msg", "state", "sent", "started", "finished", "took", "attempts")
        lines.append(table(headers, rows, right=(1, 3, 4, 5, 6, 7), colour=colour, indent="  "))
    for e in trace.entries:
        for err in e.errors:
            lines.append(
                "  "
                + paint("error", "red", colour)
                + f" {e.step} msg {e.msg_id or '?'} attempt {err.get('attempt', '-')}"
                + f" ({timestamp(err.get('at'))}): {err.get('type') or '?'}: "
                + shorten(str(err.get("message") or ""), 120)
            )
    if trace.unrecorded:
        lines.append(
            f"  unknown: no record of step {', '.join(trace.unrecorded)} "
            "(not reached, or done and not archived)"
        )
    for j in trace.joins:
        if j.completed_at is None:
            lines.append(
                f"  join {j.step} waits for {', '.join(j.missing) or '?'}"
                f" (arrived: {', '.join(j.arrived) or 'none'})"
            )
    return "\n".join(lines)


_STATE_STYLE = {"done": "green", "dead letter": "red", "retrying": "yellow"}


def _trace_row(e: TraceEntry, start: datetime | None) -> list[Cell]:
    return [
        Cell(e.step or "?"),
        Cell(str(e.msg_id) if e.msg_id is not None else "-"),
        Cell(e.state, _STATE_STYLE.get(e.state)),
        Cell(_offset(e.sent, start)),
        Cell(_offset(e.started, start)),
        Cell(_offset(e.finished, start)),
        Cell(_seconds(e.duration)),
        Cell("-" if e.attempts is None else str(e.attempts)),
    ]


def _offset(moment: datetime | None, start: datetime | None) -> str:
    if moment is None or start is None:
        return "-"
    return "+" + _seconds((moment - start).total_seconds())


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}s" if abs(value) < 60 else age(value)


def maintain_text(report: MaintainReport) -> str:
    """Partitions created and dropped, archived rows deleted, join rows deleted, problems."""
    parts = report.partitions
    lines = [
        f"partitions: {len(parts.created)} created, {len(parts.dropped)} dropped"
        + (f", {parts.moved_rows} rows moved out of default partitions" if parts.moved_rows else "")
    ]
    lines += [
        f"  {a.action} {a.partition_name} ({a.queue_name})" for a in parts.created + parts.dropped
    ]
    trimmed = [a for a in report.archives if a.note != "partitioned"]
    if report.archives:
        lines.append(
            f"archive retention: {count(report.archived_deleted, 'archived message')} deleted"
        )
        for a in trimmed:
            if a.deleted:
                lines.append(f"  {a.queue}: {a.deleted} older than {format_duration(a.retention)}")
        partitioned = sorted({a.pipeline for a in report.archives if a.note == "partitioned"})
        if partitioned:
            lines.append(
                f"  {', '.join(partitioned)}: partitioned, old archive partitions are dropped "
                "by partition retention"
            )
    else:
        lines.append("archive retention: no pipeline sets queues.archive.retention")
    lines.append(f"join state: {count(report.joins_deleted, 'completed join row')} deleted")
    lines.append(
        "incomplete joins: "
        f"{count(report.incomplete_joins_deleted, 'join row')} past retention deleted"
    )
    lines += [
        f"  {t.pipeline}: {t.deleted} older than {format_duration(t.retention)}"
        for t in report.incomplete_joins
        if t.deleted
    ]
    lines += [f"problem: {p}" for p in report.problems]
    now = datetime.now(UTC)
    lines += [f"warning: {h.describe(now)}" for h in report.horizon]
    return "\n".join(lines)
