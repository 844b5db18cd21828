"""Retry policy as data: what happens to a message after a failed attempt.

`decide` turns (policy, attempt, error) into a `RetryDecision`: dead-letter now, or try again
after `delay` seconds. A retry moves the message's vt; no worker sleeps on it.

Waits grow with the attempt that failed (1-based): constant ``initial``; linear
``initial x attempt``; exponential ``initial x 2^(attempt-1)``; always capped at ``max``.
With jitter the wait is drawn uniformly from [wait/2, wait] ("equal jitter"): retries of many
messages that failed together spread out, and no retry comes sooner than half the wait.

`reconnect_delay` (from `orchestrator.db.connect`, where refused connections wait it out too)
is the worker's own backoff after database errors (capped exponential with jitter), unrelated
to any step's policy.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.db.connect import reconnect_delay
from orchestrator.errors import ContractError
from orchestrator.runtime.context import Fail, Retry
from orchestrator.spec.models import RetryPolicy

__all__ = ["RetryDecision", "backoff_delay", "decide", "reconnect_delay"]


@dataclass(frozen=True)
class RetryDecision:
    """After failed attempt `attempt`: dead-letter (`dead`) or retry in `delay` seconds."""

    attempt: int
    dead: bool
    delay: float = 0.0
    permanent: bool = False
    """True for failures no retry can fix (`Fail`, a payload that is not an object...)."""


def backoff_delay(
    policy: RetryPolicy, attempt: int, *, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based) under `policy`."""
    attempt = max(1, attempt)
    if policy.backoff == "constant":
        wait = policy.initial
    elif policy.backoff == "linear":
        wait = policy.initial * attempt
    else:
        # 2**63 is far beyond any cap; the exponent stays small so the float never overflows.
        wait = policy.initial * 2.0 ** min(attempt - 1, 63)
    wait = min(wait, policy.max)
    if policy.jitter:
        wait *= 0.5 + 0.5 * rand()
    return wait


def decide(
    policy: RetryPolicy,
    attempt: int,
    error: BaseException,
    *,
    permanent: bool = False,
    now: float | None = None,
    rand: Callable[[], float] = random.random,
) -> RetryDecision:
    """What to do after attempt `attempt` failed with `error`.

    `Fail`, `ContractError` (or `permanent=True`) dead-letter at once; so does a failure of
    the last allowed attempt. `Retry(after=...)` picks the wait itself; otherwise the
    policy's backoff does.
    """
    if permanent or isinstance(error, Fail | ContractError):
        return RetryDecision(attempt, dead=True, permanent=True)
    if attempt >= policy.max_attempts:
        return RetryDecision(attempt, dead=True)
    wanted = error.delay(now) if isinstance(error, Retry) else None
    delay = backoff_delay(policy, attempt, rand=rand) if wanted is None else wanted
    return RetryDecision(attempt, dead=False, delay=delay)
