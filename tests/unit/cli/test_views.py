"""The status view colours only what needs attention, and only when asked to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.cli.views import status_text
from orchestrator.ops.schedules import NextTick
from orchestrator.ops.status import PipelineStatus, QueueNumbers, StatusReport, StepStatus

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def numbers(**changes: object) -> QueueNumbers:
    base: dict[str, object] = dict(
        waiting=0, visible=0, in_flight=0, retrying=0, delayed=0, oldest_age=None, failures=0,
        handed_off=0, table_bytes=8192, archive_bytes=8192, live_tuples=10, dead_tuples=0,
    )  # fmt: skip
    return QueueNumbers(**{**base, **changes})  # type: ignore[arg-type]


def report(steps: list[StepStatus], schedules: tuple[NextTick, ...] = ()) -> StatusReport:
    pipeline = PipelineStatus(
        name="orders",
        applied_at=NOW,
        archive_enabled=True,
        steps=tuple(steps),
        dead_letter_queue="orders_dlq",
        dead_letter_numbers=numbers(),
        dead_letter_steps={s.step: s.dead_letters for s in steps if s.dead_letters},
        schedules=schedules,
    )
    return StatusReport(NOW, 60.0, (pipeline,))


def row(name: str, queue: QueueNumbers | None, dead_letters: int = 0) -> StepStatus:
    return StepStatus("orders", name, f"orders__{name}", 30.0, queue, 0, 0, dead_letters)


def test_healthy_steps_have_no_colour_even_on_a_terminal() -> None:
    text = status_text(report([row("fetch", numbers(waiting=3, visible=3))]), colour=True)
    body = text.split("\n")[2]
    assert "\x1b[" not in body
    assert body.split() == ["fetch", "3", "3", "0", "0", "0", "-", "0", "0", "0", "8.0", "kB", "0%"]


def test_attention_is_coloured() -> None:
    steps = [
        row("fetch", numbers(oldest_age=120.0), dead_letters=2),
        row("sync", numbers(live_tuples=100, dead_tuples=300)),
        row("label", None),
    ]
    coloured = status_text(report(steps), colour=True)
    assert "\x1b[33m2m00s\x1b[0m" in coloured  # older than the visibility timeout
    assert "\x1b[31m2\x1b[0m" in coloured  # dead letters
    assert "\x1b[33m75%\x1b[0m" in coloured  # dead tuples
    assert "\x1b[31mqueue missing\x1b[0m" in coloured
    assert "\x1b[31mdead letters (orders_dlq): 2\x1b[0m (fetch 2;" in coloured
    plain = status_text(report(steps))
    assert "\x1b[" not in plain and "queue missing" in plain and "75%" in plain


def test_overdue_schedule() -> None:
    late = NextTick("orders", "daily", "0 6 * * *", "UTC", NOW - timedelta(hours=1), None)
    text = status_text(report([row("fetch", numbers())], (late,)))
    assert "schedule daily (0 6 * * *, UTC): next tick 2030-01-01 11:00 UTC (1h00m ago)" in text
    assert "overdue: is a worker running?" in text


def test_one_handled_message_is_no_dead_tuple_alarm() -> None:
    # After the first message a queue table holds one dead tuple and no live one: 100%.
    text = status_text(report([row("fetch", numbers(live_tuples=0, dead_tuples=1))]), colour=True)
    body = text.split("\n")[2]
    assert "100%" not in body and "\x1b[" not in body
    assert body.split()[-1] == "-"


def test_status_fits_the_width_it_is_given() -> None:
    wide = status_text(report([row("fetch", numbers(waiting=3, visible=3))]))
    narrow = status_text(report([row("fetch", numbers(waiting=3, visible=3))]), width=60)
    assert max(len(line) for line in narrow.split("\n")[:3]) <= 60
    assert "size" in wide.split("\n")[1] and "size" not in narrow.split("\n")[1]
    assert "--wide shows all" in narrow and "--wide" not in wide


def test_topics_line_says_what_a_pipeline_subscribes_to_and_publishes() -> None:
    from dataclasses import replace

    base = report([row("fetch", numbers()), row("sync", numbers())])
    assert "topics:" not in status_text(base)
    pipeline = replace(
        base.pipelines[0],
        subscriptions=("shop.#", "returns.*"),
        published=(("sync", ("orders.synced", "sap.done")),),
    )
    text = status_text(replace(base, pipelines=(pipeline,)))
    assert (
        "  topics: subscribes to shop.#, returns.*; sync publishes orders.synced, sap.done"
        in text.split("\n")
    )
    assert pipeline.to_json()["subscribe"] == ["shop.#", "returns.*"]
    assert pipeline.to_json()["publish"] == {"sync": ["orders.synced", "sap.done"]}
