"""Progress: a bar redrawn in place on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from orchestrator.cli.progress import Progress, progress_callback


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_interval_and_a_final_line() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress("replay", total=100, stream=out, clock=clock, every=5) as progress:
        progress.advance(10)  # too soon for a line
        clock.now = 5
        progress.advance(40)
        clock.now = 6
        progress.advance(10)
        clock.now = 10
        progress.advance(40)
    assert out.getvalue().splitlines() == [
        "replay: 50/100 (50%), 10/s, 5s left",
        "replay: 100/100 (100%), 10/s",
        "replay: 100/100 done in 10.0s",
    ]


def test_quick_work_prints_nothing_off_a_terminal() -> None:
    out = io.StringIO()
    with Progress("purge", total=3, stream=out, clock=Clock()) as progress:
        progress.advance(3)
    assert out.getvalue() == ""


def test_bar_on_a_terminal() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("replay", total=4, stream=out, interactive=True, clock=clock, width=60)
    clock.now = 1
    progress.advance(1)
    progress.finish()
    progress.finish()  # idempotent
    text = out.getvalue()
    assert text.startswith("\rreplay [")
    assert "1/4 (25%)" in text and "4/4" not in text.split("\r")[1]
    assert text.endswith("\x1b[K\n")
    assert text.count("\n") == 1
    assert "#" in text.split("\r")[-1]


def test_unknown_total_and_callback() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("drain", stream=out, clock=clock, every=1)
    clock.now = 2
    progress.advance(7)
    assert out.getvalue() == "drain: 7, 4/s\n"
    progress_callback(None)(3)  # no progress to show: nothing happens
    progress_callback(progress)(5)
    assert progress.done == 12
