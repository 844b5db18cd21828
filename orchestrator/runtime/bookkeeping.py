"""What a batch's attempts add up to: the hand-offs, retries and dead letters of its
`complete` call, the metrics, and the log lines of failed attempts.

A failed attempt is one line (pipeline, step, run id, attempt, error type and message), up to
`LINES_PER_WINDOW` lines per step, outcome and error type per `LINES_EVERY` seconds; beyond
that, a storm's further attempts go to debug level and one line per window says how many there
were (the dead-letter queue keeps every dead letter, with its traceback). A traceback reaches
the log once per distinct error per `TRACEBACK_EVERY` seconds.

Every per-message decision of the hand-off is taken here, in `Bookkeeper`: a success is handed
off; a failure is retried per the step's policy (`retry.decide`) or dead-lettered, and a retry
delay the queue cannot store (``Retry(after=1e13)``) fails that message alone. Checks that
must hold before a handler runs (`precheck`: a body that cannot be decoded or is not an object,
a message read more often than its step allows) are here too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from orchestrator.errors import (
    AttemptFailure,
    InvalidPayload,
    InvalidRetryDelay,
    UndecodableMessage,
    WorkerLost,
)
from orchestrator.observe import otel
from orchestrator.runtime import handoff
from orchestrator.runtime.context import Retry
from orchestrator.runtime.handoff import Completion, Outcomes, StepMessage, StepTarget
from orchestrator.runtime.retry import RetryDecision, decide
from orchestrator.spec.models import RetryPolicy

MAX_RETRY_DELAY = 10 * 365 * 86400.0
"""Longest wait a retry may ask for (ten years): far below what a timestamp can hold."""

TRACEBACK_EVERY = 60.0
"""Seconds between two tracebacks of the same error in the log (the dead letter keeps each)."""

LINES_EVERY = 60.0
"""The window of `LINES_PER_WINDOW`, in seconds."""

LINES_PER_WINDOW = 10
"""Failed-attempt lines logged one by one per step, outcome and error type per window."""

Log = logging.LoggerAdapter[logging.Logger]


class Counters:
    """The runtime metrics bound to one step's labels."""

    def __init__(self, metrics: Any, pipeline: str, step: str) -> None:
        self.handoffs = metrics.handoffs.labels(pipeline, step)
        self.failures = metrics.failures.labels(pipeline, step)
        self.retries = metrics.retries.labels(pipeline, step)
        self.dead_letters = metrics.dead_letters.labels(pipeline, step)
        self.lease_extensions = metrics.lease_extensions.labels(pipeline, step)
        self.handler_seconds = metrics.handler_seconds.labels(pipeline, step)

    def count(self, done: Completion) -> None:
        if done.handed_off:
            self.handoffs.inc(done.handed_off)
        if done.retried:
            self.retries.inc(done.retried)
        if done.dead_lettered:
            self.dead_letters.inc(done.dead_lettered)
        if done.retried or done.dead_lettered:
            self.failures.inc(done.retried + done.dead_lettered)


class TracebackGate:
    """Lets a traceback into the log once per distinct error per `every` seconds."""

    def __init__(self, every: float = TRACEBACK_EVERY, clock: Callable[[], float] = time.monotonic):
        self._every = every
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}

    def allow(self, error: BaseException) -> bool:
        key = (type(error).__qualname__, _where(error))
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._every:
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = now
        return True


class _Window:
    __slots__ = ("held", "logged", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.logged = 0
        self.held = 0


class LineBudget:
    """Lets `lines` log lines per key through per `every` seconds and counts the rest.

    `admit` says whether a line may be logged; when a window that held lines back ends (at the
    next line of its key, or by a timer set when the first line was held), `summarise` is called
    with the key, how many lines were held and the window's length.
    """

    def __init__(
        self,
        summarise: Callable[[tuple[str, str], int, float], None],
        *,
        lines: int = LINES_PER_WINDOW,
        every: float = LINES_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._summarise = summarise
        self._lines = lines
        self._every = every
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}

    def admit(self, key: tuple[str, str]) -> bool:
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window.started >= self._every:
            self.close(key)
            window = self._windows[key] = _Window(now)
        if window.logged < self._lines:
            window.logged += 1
            return True
        window.held += 1
        if window.held == 1:
            self._close_later(key, window.started + self._every - now)
        return False

    def close(self, key: tuple[str, str]) -> None:
        """End `key`'s window, saying how many lines it held back."""
        window = self._windows.pop(key, None)
        if window is not None and window.held:
            self._summarise(key, window.held, self._clock() - window.started)

    def close_all(self) -> None:
        for key in list(self._windows):
            self.close(key)

    def _close_later(self, key: tuple[str, str], delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: the next line of the key closes the window
            return
        window = self._windows[key]

        def close() -> None:
            if self._windows.get(key) is window:
                self.close(key)

        loop.call_later(max(0.0, delay), close)


def _where(error: BaseException) -> str:
    """The innermost frame of `error`'s traceback, as ``file:line``."""
    tb = error.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


def lost_attempts(m: StepMessage) -> bool:
    """True when `m`'s previous read ended without a recorded outcome: its worker died, its
    batch was rolled back, or it was given back on a shutdown. Such a message is a suspect."""
    if m.read_ct <= 1:
        return False
    errors = m.headers.get("errors")
    last = errors[-1] if isinstance(errors, list) and errors else None
    return not (isinstance(last, dict) and last.get("attempt") == m.read_ct - 1)


def proven_lost(m: StepMessage) -> bool:
    """Over its cap, a message is dead-lettered when its last two reads were lost while it ran
    alone in its process (``headers.isolated`` is set before a suspect runs alone, and
    ``isolated_streak`` counts the reads lost alone just before that one): then its own handler
    ended the process, twice. One lost alone may be an outside SIGKILL that hit that run; lost
    last in a shared batch, it gets runs alone first, so a batch-mate is never dead-lettered
    for another message's crash."""
    if not lost_attempts(m):
        return True
    streak = m.headers.get("isolated_streak")
    return (
        m.headers.get("isolated") == m.read_ct - 1
        and isinstance(streak, int)
        and not isinstance(streak, bool)
        and streak >= 1
    )


def is_suspect(m: StepMessage) -> bool:
    """A message to run alone, in a batch of one (see docs/architecture.md, "Poison")."""
    return m.undecodable is None and lost_attempts(m)


class Bookkeeper:
    """Records one step's attempts in a batch's `Outcomes`; see the module docstring."""

    def __init__(
        self,
        target: StepTarget,
        policy: RetryPolicy,
        message_logger: Callable[[StepMessage], Log],
        counters: Counters | None = None,
        step_log: Log | None = None,
    ) -> None:
        self.target = target
        self.policy = policy
        self._message_logger = message_logger
        self._counters = counters
        self._gate = TracebackGate()
        self._step_log = step_log
        self.lines = LineBudget(self._summarise)

    def precheck(self, outcomes: Outcomes, m: StepMessage) -> bool:
        """Fail `m` before its handler runs when it must not run; True when it may run."""
        if m.undecodable is not None:
            self.failed(outcomes, m, UndecodableMessage(m.undecodable))
        elif not isinstance(m.body, dict):
            what = handoff._kind(m.body)
            self.failed(outcomes, m, InvalidPayload(f"the message body is {what}, not an object"))
        elif m.read_ct > self.policy.max_attempts and proven_lost(m):
            self.failed(outcomes, m, WorkerLost(self._lost_text(m)))
        else:
            return True
        return False

    def _lost_text(self, m: StepMessage) -> str:
        return (
            f"read {m.read_ct - 1} times (max_attempts {self.policy.max_attempts}) and its "
            "last attempt never finished: its worker died or lost it during that attempt"
        )

    def succeeded(self, outcomes: Outcomes, m: StepMessage, output: str) -> None:
        outcomes.done(m, output)

    def failed(
        self,
        outcomes: Outcomes,
        m: StepMessage,
        error: BaseException,
        log: Log | None = None,
        span: Any = None,
    ) -> None:
        """Record a failed attempt: a retry per the policy, or a dead letter (and end the
        attempt's trace `span` saying which)."""
        decision = self._decide(m, error)
        # An impossible delay is the handler's mistake, on its last attempt too: say so.
        delay = _asked_delay(error) if decision.dead else decision.delay
        if not _storable(delay):
            error = InvalidRetryDelay(
                f"{error}: a retry in {delay:g}s cannot be stored; "
                f"the longest wait is {MAX_RETRY_DELAY:g}s (ten years)"
            )
            decision = RetryDecision(decision.attempt, dead=True, permanent=True)
        headers = handoff.with_error(m.headers, handoff.error_record(m.read_ct, error))
        if decision.dead:
            body = handoff.dead_letter_body(
                self.target, m, error, permanent=decision.permanent, headers=headers
            )
            outcomes.dead(m, body)
            otel.end_attempt(span, error, dead_letter=True, permanent=decision.permanent)
        else:
            outcomes.retry(m, decision.delay, headers)
            otel.end_attempt(span, error, retry_in=decision.delay)
        self._log(log or self._message_logger(m), m, error, decision)

    def _decide(self, m: StepMessage, error: BaseException) -> RetryDecision:
        permanent = isinstance(error, AttemptFailure) and error.permanent
        try:
            return decide(self.policy, m.read_ct, error, permanent=permanent)
        except (OverflowError, ValueError, OSError):  # a datetime no clock can reach
            return RetryDecision(m.read_ct, dead=False, delay=math.inf)

    def _log(self, log: Log, m: StepMessage, error: BaseException, decision: RetryDecision) -> None:
        described = f"{type(error).__name__}: {error}"
        admitted = self.lines.admit(("dead" if decision.dead else "retry", type(error).__name__))
        if not admitted and not log.isEnabledFor(logging.DEBUG):
            return
        trace = not isinstance(error, AttemptFailure) and (
            log.isEnabledFor(logging.DEBUG) or self._gate.allow(error)
        )
        attempt = f"attempt {m.read_ct} of {self.policy.max_attempts} failed"
        if decision.dead:
            why = "permanent failure" if decision.permanent else attempt
            log.log(
                logging.ERROR if admitted else logging.DEBUG,
                "%s (%s); dead-lettered to %s",
                why,
                described,
                self.target.dead_letter_queue,
                exc_info=error if trace else None,
            )
        else:
            log.log(
                logging.WARNING if admitted else logging.DEBUG,
                "%s (%s); retrying in %.3gs",
                attempt,
                described,
                decision.delay,
                exc_info=error if trace else None,
            )

    def _summarise(self, key: tuple[str, str], held: int, seconds: float) -> None:
        """One line for the failed attempts of a window that were not logged one by one."""
        if self._step_log is None:
            return
        outcome, error_type = key
        if outcome == "dead":
            self._step_log.error(
                "%d more attempts failed with %s in %.0fs and were dead-lettered to %s"
                " (not logged one by one: `orchestrator dlq list` shows each)",
                held,
                error_type,
                seconds,
                self.target.dead_letter_queue,
            )
        else:
            self._step_log.warning(
                "%d more attempts failed with %s in %.0fs and will be retried"
                " (not logged one by one: --log-level debug shows each)",
                held,
                error_type,
                seconds,
            )

    def count(self, done: Completion) -> None:
        if self._counters is not None:
            self._counters.count(done)


def _asked_delay(error: BaseException) -> float:
    """The delay a `Retry` asked for (0 for any other error, or one leaving it to the policy)."""
    if not isinstance(error, Retry):
        return 0.0
    try:
        asked = error.delay()
    except (OverflowError, ValueError, OSError):  # a datetime no clock can reach
        return math.inf
    return 0.0 if asked is None else asked


def _storable(delay: float) -> bool:
    return math.isfinite(delay) and 0 <= delay <= MAX_RETRY_DELAY
