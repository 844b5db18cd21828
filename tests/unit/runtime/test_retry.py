"""The retry policy: waits per backoff, the cap, jitter bounds, and what dead-letters."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.runtime import Fail, Retry
from orchestrator.runtime.retry import backoff_delay, decide, reconnect_delay
from orchestrator.spec import RetryPolicy


def policy(**changes: object) -> RetryPolicy:
    return RetryPolicy(**{"jitter": False, "initial": 2.0, "max": 60.0, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("backoff", "waits"),
    [
        ("constant", [2, 2, 2, 2]),
        ("linear", [2, 4, 6, 8]),
        ("exponential", [2, 4, 8, 16]),
    ],
)
def test_backoff_shapes(backoff: str, waits: list[float]) -> None:
    p = policy(backoff=backoff)
    assert [backoff_delay(p, a) for a in (1, 2, 3, 4)] == waits


def test_waits_are_capped() -> None:
    p = policy(backoff="exponential", max=10.0)
    assert backoff_delay(p, 4) == 10.0
    assert backoff_delay(p, 10_000) == 10.0  # no overflow on absurd attempt numbers
    assert backoff_delay(policy(backoff="linear", max=5.0), 3) == 5.0


def test_jitter_draws_between_half_and_the_full_wait() -> None:
    p = policy(jitter=True)
    assert backoff_delay(p, 3, rand=lambda: 0.0) == 4.0
    assert backoff_delay(p, 3, rand=lambda: 1.0) == 8.0
    assert backoff_delay(p, 3, rand=lambda: 0.5) == 6.0


def test_decide_retries_until_max_attempts() -> None:
    p = policy(max_attempts=3)
    assert decide(p, 1, ValueError()).delay == 2.0
    assert not decide(p, 2, ValueError()).dead
    last = decide(p, 3, ValueError())
    assert last.dead and not last.permanent


def test_fail_and_permanent_dead_letter_at_once() -> None:
    p = policy(max_attempts=5)
    assert decide(p, 1, Fail("x")).dead and decide(p, 1, Fail("x")).permanent
    assert decide(p, 1, ValueError(), permanent=True).permanent


def test_retry_after_overrides_the_backoff() -> None:
    p = policy(max_attempts=5)
    assert decide(p, 1, Retry(after=42)).delay == 42
    assert decide(p, 1, Retry(after=timedelta(minutes=2))).delay == 120
    now = time.time()
    at = datetime.fromtimestamp(now + 30, UTC)
    assert decide(p, 1, Retry(after=at), now=now).delay == pytest.approx(30)
    assert decide(p, 1, Retry()).delay == 2.0
    assert decide(p, 1, Retry(after=-5)).delay == 0.0
    assert decide(p, 5, Retry(after=1)).dead  # still counts against max_attempts


def test_retry_refuses_nonsense() -> None:
    with pytest.raises(TypeError):
        Retry(after="soon")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Retry(after=True)
    assert str(Retry(after=5)) == "retry requested in 5s"
    assert str(Retry(after=5, reason="rate limited")) == "rate limited"


def test_reconnect_delay_grows_and_is_capped() -> None:
    assert reconnect_delay(1, rand=lambda: 1.0) == pytest.approx(0.2)
    assert reconnect_delay(3, rand=lambda: 1.0) == pytest.approx(0.8)
    assert reconnect_delay(100, rand=lambda: 1.0) == 30.0
    assert reconnect_delay(100, rand=lambda: 0.0) == 15.0
