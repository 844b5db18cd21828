"""The consumer's parts on their own: the doorbell, the deadline, the outcome bookkeeping
(retry, dead letter, the read cap, suspects, invalid delays), the traceback gate, and the
lossless JSON text codec."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import orjson
import pytest

from orchestrator.db.jsontext import UndecodableJson, dumps, loads
from orchestrator.errors import HandlerTimeout
from orchestrator.observe.logging import TextFormatter
from orchestrator.runtime import Fail, Retry
from orchestrator.runtime.bookkeeping import (
    Bookkeeper,
    LineBudget,
    TracebackGate,
    is_suspect,
    lost_attempts,
)
from orchestrator.runtime.handoff import Outcomes, StepMessage, StepTarget
from orchestrator.runtime.timers import Deadline, Doorbell
from orchestrator.spec.models import RetryPolicy

# -- the doorbell ---------------------------------------------------------------------------


async def test_a_ring_since_seen_is_never_missed() -> None:
    bell = Doorbell()
    seen = bell.rings
    bell.ring()
    await asyncio.wait_for(bell.wait(seen, 60), 5)  # rang before the wait: returns at once
    assert bell.waiting == 0


async def test_ring_wakes_every_waiter_and_a_timeout_unlists_its_waiter() -> None:
    bell = Doorbell()
    waiters = [asyncio.create_task(bell.wait(bell.rings, 60)) for _ in range(3)]
    await asyncio.sleep(0)
    assert bell.waiting == 3
    bell.ring()
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    await bell.wait(bell.rings, 0.01)  # nobody rings: the timer ends it
    assert bell.waiting == 0


async def test_a_nudge_ends_the_waits_without_counting_a_ring() -> None:
    bell = Doorbell()
    seen = bell.rings
    waiter = asyncio.create_task(bell.wait(seen, 60))
    await asyncio.sleep(0)
    bell.nudge()
    await asyncio.wait_for(waiter, 5)
    assert (bell.rings, bell.nudges, bell.waiting) == (seen, 1, 0)


# -- the deadline ---------------------------------------------------------------------------


async def test_a_deadline_cancels_its_task_and_says_so() -> None:
    async def handler() -> None:
        await asyncio.sleep(60)

    task = asyncio.create_task(handler())
    await asyncio.sleep(0)
    deadline = Deadline(task)
    deadline.arm(0.01)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadline.expired


async def test_a_disarmed_deadline_never_fires_and_expire_now_fires_at_once() -> None:
    async def handler() -> str:
        await asyncio.sleep(0.05)
        return "done"

    task = asyncio.create_task(handler())
    quiet = Deadline(task)
    quiet.arm(0.01)
    quiet.disarm()
    assert await task == "done" and not quiet.expired
    quiet.close()

    task = asyncio.create_task(handler())
    await asyncio.sleep(0)
    loud = Deadline(task)
    loud.expire_now()  # not armed: nothing to expire
    assert not loud.expired
    loud.arm(60)
    loud.expire_now()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loud.expired
    loud.close()


async def test_calls_of_a_batch_share_one_timer_that_still_ends_a_late_call() -> None:
    """The timer set for the first call fires while the second runs: it waits for the second
    call's own end (a whole timeout from its start), then cancels it."""
    loop = asyncio.get_running_loop()
    calls: list[tuple[str, float]] = []

    async def batch() -> None:
        current = asyncio.current_task()
        assert current is not None
        deadline = Deadline(current)
        try:
            for name, seconds in (("first", 0.1), ("second", 60.0)):
                deadline.arm(0.2)
                calls.append((name, loop.time()))
                try:
                    await asyncio.sleep(seconds)
                finally:
                    deadline.disarm()
        except asyncio.CancelledError:
            assert deadline.expired
            raise
        finally:
            deadline.close()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(batch())
    assert [name for name, _ in calls] == ["first", "second"]
    assert loop.time() - calls[1][1] >= 0.2 - 0.001  # the second call had its whole timeout


# -- the outcome bookkeeping ----------------------------------------------------------------

TARGET = StepTarget("p", "s", "p__s", "[]", True, "p_dlq")


def _books(max_attempts: int = 3) -> Bookkeeper:
    policy = RetryPolicy(max_attempts=max_attempts, backoff="constant", initial=5, jitter=False)
    log = logging.LoggerAdapter(logging.getLogger("test.books"), {})
    return Bookkeeper(TARGET, policy, lambda m: log)


def _message(read_ct: int = 1, body: Any = None, **headers: Any) -> StepMessage:
    body = {"n": 1} if body is None else body
    return StepMessage(7, read_ct, body, headers, "00000000-0000-0000-0000-000000000001")


def test_a_failure_is_retried_then_dead_lettered_on_its_last_attempt() -> None:
    books, outcomes = _books(), Outcomes()
    books.failed(outcomes, _message(1), ValueError("boom"))
    assert outcomes.retry_ids == [7] and outcomes.retry_delays == [5]
    [headers] = [orjson.loads(h) for h in outcomes.retry_headers]
    assert headers["errors"][0]["type"] == "ValueError"
    books.failed(outcomes, _message(3), ValueError("boom"))
    [dead] = [orjson.loads(b) for b in outcomes.dead_bodies]
    assert dead["attempts"] == 3 and not dead["permanent"]


def test_fail_and_runtime_failures_are_permanent() -> None:
    books, outcomes = _books(), Outcomes()
    books.failed(outcomes, _message(1), Fail("no"))
    books.failed(outcomes, _message(1), HandlerTimeout("slow"))
    assert len(outcomes.dead_ids) == 1 and len(outcomes.retry_ids) == 1


@pytest.mark.parametrize("after", [1e13, float("inf"), float("nan")])
def test_a_retry_delay_the_queue_cannot_store_fails_that_message(after: float) -> None:
    books, outcomes = _books(), Outcomes()
    books.failed(outcomes, _message(1), Retry(after=after))
    if after != after:  # NaN: Retry reads it as "now"
        assert outcomes.retry_delays == [0.0]
        return
    [dead] = [orjson.loads(b) for b in outcomes.dead_bodies]
    assert dead["error"]["type"] == "InvalidRetryDelay" and dead["permanent"]


def test_an_impossible_retry_delay_is_named_on_the_last_attempt_too() -> None:
    books, outcomes = _books(max_attempts=2), Outcomes()
    books.failed(outcomes, _message(2), Retry(after=1e13))
    [dead] = [orjson.loads(b) for b in outcomes.dead_bodies]
    assert dead["error"]["type"] == "InvalidRetryDelay" and dead["permanent"]
    books.failed(outcomes, _message(2), Retry(after=5))  # a fine delay, attempts used up
    assert orjson.loads(outcomes.dead_bodies[1])["error"]["type"] == "Retry"


def test_suspects_are_messages_whose_last_read_left_no_outcome() -> None:
    assert not lost_attempts(_message(1))
    recorded = {"errors": [{"attempt": 1, "type": "ValueError"}]}
    assert not lost_attempts(_message(2, **recorded))
    assert lost_attempts(_message(3, **recorded)) and is_suspect(_message(3, **recorded))
    undecodable = _message(2)
    undecodable.undecodable = "too deep"
    assert not is_suspect(undecodable)  # it fails at once anyway


def test_the_read_cap_holds_before_the_handler_only_for_a_message_proven_lost() -> None:
    books, outcomes = _books(max_attempts=2), Outcomes()
    assert books.precheck(outcomes, _message(2))  # within the cap
    assert books.precheck(outcomes, _message(3))  # lost last in a shared batch: once alone
    assert books.precheck(outcomes, _message(3, isolated=2, isolated_streak=0))  # once alone
    assert not books.precheck(outcomes, _message(3, isolated=2, isolated_streak=1))  # twice
    [dead] = [orjson.loads(b) for b in outcomes.dead_bodies]
    assert dead["error"]["type"] == "WorkerLost" and "worker died" in dead["error"]["message"]
    assert "isolated" not in dead["headers"] and "isolated_streak" not in dead["headers"]


def test_precheck_fails_bodies_no_handler_can_take() -> None:
    books, outcomes = _books(), Outcomes()
    assert not books.precheck(outcomes, _message(1, body=[1, 2]))
    text = _message(1, body='{"deep": [[[]]]}')
    text.undecodable = "JSON nested too deeply for the decoder"
    assert not books.precheck(outcomes, text)
    kinds = [orjson.loads(b)["error"]["type"] for b in outcomes.dead_bodies]
    assert kinds == ["InvalidPayload", "UndecodableMessage"]
    assert orjson.loads(outcomes.dead_bodies[1])["payload"] == '{"deep": [[[]]]}'


def test_undo_done_takes_back_the_last_hand_off_of_a_message() -> None:
    outcomes = Outcomes()
    outcomes.done(_message(1), "{}")
    outcomes.undo_done(_message(1))
    assert len(outcomes) == 0


def test_tracebacks_are_let_through_once_per_error_per_window() -> None:
    now = [0.0]
    gate = TracebackGate(every=60, clock=lambda: now[0])
    errors = []
    for _ in range(3):
        try:
            raise ValueError("same place")
        except ValueError as exc:
            errors.append(exc)
    assert [gate.allow(e) for e in errors] == [True, False, False]
    assert gate.allow(KeyError("another"))
    now[0] = 61
    assert gate.allow(errors[0])


def test_text_logs_carry_the_worker_index() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "attempt failed", None, None)
    record.worker = "2"
    record.pipeline = "wo"
    record.step = "mail"
    assert "[w2] wo/mail" in TextFormatter().format(record)


# -- lossless JSON text ---------------------------------------------------------------------


def test_big_integers_and_long_decimals_keep_every_digit() -> None:
    text = '{"id": 123456789012345678901, "amount": 1234567890.123456789, "x": 0.1, "n": 3}'
    value = loads(text)
    assert value == {
        "id": 123456789012345678901,
        "amount": Decimal("1234567890.123456789"),
        "x": 0.1,
        "n": 3,
    }
    assert isinstance(value["x"], float)
    assert loads(dumps(value).decode()) == value  # a round trip changes nothing
    assert b"123456789012345678901" in dumps(value) and b"1234567890.123456789" in dumps(value)


def test_what_python_cannot_decode_says_why() -> None:
    with pytest.raises(UndecodableJson, match="nested too deeply"):
        loads("[" * 1025 + "]" * 1025)
    with pytest.raises(UndecodableJson):
        loads('{"n": 1' + "0" * 5000 + "}")
    assert loads('{"n": 1' + "0" * 400 + "}") == {"n": 10**400}


def test_a_storm_of_failed_attempts_is_summed_up_past_its_line_budget() -> None:
    now = [0.0]
    summaries: list[tuple[tuple[str, str], int]] = []
    budget = LineBudget(
        lambda key, held, seconds: summaries.append((key, held)),
        lines=3,
        every=60,
        clock=lambda: now[0],
    )
    retry = ("retry", "ValueError")
    assert [budget.admit(retry) for _ in range(5)] == [True, True, True, False, False]
    assert budget.admit(("dead", "ValueError"))  # another outcome has its own budget
    assert summaries == []
    now[0] = 61
    assert budget.admit(retry)  # a new window, after one line for the held ones
    assert summaries == [(retry, 2)]
    budget.close_all()
    assert summaries == [(retry, 2)]  # nothing was held in the new windows


def test_a_connection_the_server_just_ended_counts_as_an_outage_not_a_bug() -> None:
    """asyncpg leaves a connection the server terminated in state 1 or 2 until it sees the
    socket close; a call then raises InternalClientError. Another state in progress (two
    calls on one connection at once) is a bug, and is not taken for an outage."""
    import asyncpg

    from orchestrator.runtime.pgconn import is_connection_error

    for state in (1, 2):
        for target in (11, 12, 15):
            error = asyncpg.InternalClientError(
                f"cannot switch to state {target}; another operation ({state}) is in progress"
            )
            assert is_connection_error(error)
    misuse = asyncpg.InternalClientError(
        "cannot switch to state 15; another operation (12) is in progress"
    )
    assert not is_connection_error(misuse)
    assert is_connection_error(asyncpg.InterfaceError("connection is closed"))
    assert not is_connection_error(ValueError("x"))
