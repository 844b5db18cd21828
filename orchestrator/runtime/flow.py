"""Flow control on the read path: what a step's read loop asks before it reads a batch.

One `FlowGate` per step and process, shared by the step's loops. Before a read, a loop calls
`admit(conn, wanted, stopping)`; it returns how many messages the loop may read, after
waiting as long as it must, with no transaction open:

- **pause**: a paused step (``orchestrator.paused_steps``) is not read. Looked up at most once
  a second per step and process, so a pause takes effect within a second; a NOTIFY on
  ``orchestrator_flow`` makes a resume take effect at once.
- **max_waiting** of a successor (backpressure): while the successor's queue holds more
  visible messages than its cap, this step does not read (its own messages stay in its queue);
  checked once a second while waiting. A successor drains whatever its own successors do, and
  the steps of a pipeline form a DAG, so waits always end at a step with no successor: two
  branches never wait on each other (a join waits on its own successors, never on its
  predecessors). The queue may exceed its cap by one batch per reader of each predecessor,
  since each checks before it reads.
- **max_in_flight**: slots (``orchestrator.flow_slots``) taken before the read, one per
  message, given back after the batch's hand-off (or, for a SIGKILLed worker, when their
  lease of one visibility timeout runs out). A loop without a slot waits for the NOTIFY of a
  freed slot or the end of the first held slot's lease, whichever comes first; a worker
  that hears no notifications (behind a transaction pooler) polls once a second.
- **rate_limit**: tokens taken before the read in one ``UPDATE ... RETURNING``
  (``orchestrator.take_tokens``); with none granted it sleeps until the next token is due, as
  the database computed.

A limited step asks all of this in one statement (``orchestrator.flow_admit``: pause, caps,
slots, tokens), and its loops in one process pass `admit` one at a time: while the step waits
it sends one query per wait, which lasts until the moment the database named (the next
token, the end of a slot's lease) or a NOTIFY, and at most `QUIET_POLL` seconds (one second
for a pause or a full successor, and without notifications).
- **group_by**: the hand-off (and `start`) put the payload's value at the key path in the
  queue layer's FIFO group header, ``x-pgmq-group``; the read takes only the head of each
  group (``pgmq.read_grouped_head``), a group's oldest message, and only when it is visible:
  a group's messages run one at a time in send order, and a retrying message (its vt in the
  future) holds its group until it succeeds or is dead-lettered. Messages without the key
  share the queue layer's default group.

Tokens and slots a read did not use are given back at once. A step with none of these keys
pays only the once-a-second pause lookup, and keeps reading ahead in its hand-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from orchestrator.db.named_sql import named_queries
from orchestrator.runtime import handoff
from orchestrator.runtime.handoff import StepMessage
from orchestrator.runtime.wakeup import wait_for_any
from orchestrator.spec.models import Pipeline, ResolvedStep

FLOW_CHANNEL = "orchestrator_flow"
"""Channel of freed slots, pauses and resumes (payload: slot name or 'pipeline.step')."""

CHECK_INTERVAL = 1.0
"""Seconds between lookups of a pause or a full successor queue, and between slot polls of a
worker that hears no notifications."""

SLOT_RETRY = 0.05
"""Shortest wait for a slot (a lease that ran out while another worker takes it)."""

QUIET_POLL = 10.0
"""Longest wait for a slot, or of a paused step, in a worker that hears notifications: freed
slots, pauses and resumes are announced, so this only bounds a notification lost with the
listening connection."""

_Q = named_queries("orchestrator.runtime")


@dataclass
class Admission:
    """What a loop may read: `qty` messages, with the tokens and slots taken for them."""

    qty: int
    tokens: int = 0
    slots: list[int] = field(default_factory=list)
    used: int = 0


@dataclass(frozen=True)
class _Limit:
    name: str
    rate: float
    burst: float


class FlowGate:
    """Flow control of one step in one process; see the module docstring."""

    def __init__(self, pipeline: Pipeline, step: ResolvedStep, lease_seconds: float) -> None:
        self.pipeline = pipeline.name
        self.step = step.name
        self._key = f"{pipeline.name}.{step.name}"
        limit = step.rate_limit
        self._limit = (
            None
            if limit is None
            else _Limit(limit.bucket(pipeline.name, step.name), limit.per_second, limit.burst)
        )
        self._slots = step.max_in_flight
        self._group = step.group_by
        self._caps = [
            (pipeline.queue_name(s), cap)
            for s in step.successors
            if (cap := pipeline.step(s).max_waiting) is not None
        ]
        self._lease = lease_seconds
        self._holder = uuid.uuid4()
        self._admit_lock = asyncio.Lock()
        self._pause_lock = asyncio.Lock()
        self._bell = asyncio.Event()
        self._paused = False
        self._paused_checked = -CHECK_INTERVAL
        self.notified = False
        """Set by the worker when its listener hears FLOW_CHANNEL: waits may then be long."""
        self.waiting_for: str | None = None
        """What the step waits for now ('paused', 'backpressure', 'slot', 'token'), or None."""

    @property
    def limited(self) -> bool:
        """True when a limit applies: reads go through `admit`, never ahead in a hand-off."""
        return bool(self._limit or self._slots or self._group or self._caps)

    def names(self) -> set[str]:
        """Notification payloads that concern this gate."""
        return {self._key, f"{self.pipeline}."}

    def wake(self, payload: str = "") -> None:
        """A NOTIFY on FLOW_CHANNEL, or '' (a reconnected listener may have missed some):
        waiting loops look again now, the pause included."""
        if payload and payload not in self.names():
            return
        self._paused_checked = -CHECK_INTERVAL
        self._bell.set()

    def may_read_ahead(self) -> bool:
        """A hand-off may read the next batch itself: no limit, and known not paused."""
        fresh = time.monotonic() - self._paused_checked < CHECK_INTERVAL
        return not self.limited and fresh and not self._paused

    async def admit(self, conn: Any, wanted: int, stopping: asyncio.Event) -> Admission | None:
        """Wait until up to `wanted` messages may be read; None when `stopping` was set.

        A loop first tries at once (unless another loop of the step already waits); a loop
        that must wait queues behind the one waiting, so a waiting step sends at most one
        query a second per process (a token wait: one when the token is due), whatever its
        concurrency.
        """
        if not self.limited:
            while not stopping.is_set():
                if not await self._is_paused(conn):
                    return Admission(wanted)
                await self._sleep(stopping, self._quiet_poll)
            return None
        if not self._admit_lock.locked():
            admission = await self._try(conn, wanted)
            if isinstance(admission, Admission):
                return admission
        async with self._admit_lock:
            while not stopping.is_set():
                admission = await self._try(conn, wanted)
                if isinstance(admission, Admission):
                    return admission
                await self._sleep(stopping, admission)
        return None

    async def read(self, conn: Any, queue: str, vt: int, admission: Admission) -> list[StepMessage]:
        """Read at most what `admission` allows; give back what the read did not use."""
        if self._group is None:
            messages = await handoff.read(conn, queue, vt, admission.qty)
        else:
            rows = await conn.fetch(_Q["read_grouped"], queue, vt, admission.qty)
            messages = [StepMessage.from_row(row, queue) for row in rows]
        admission.used = len(messages)
        if admission.tokens > admission.used:
            await conn.execute(
                _Q["give_tokens"], self._limit_name, admission.tokens - admission.used
            )
        if len(admission.slots) > admission.used:
            await self._give_slots(conn, admission.slots[admission.used :])
            admission.slots = admission.slots[: admission.used]
        return messages

    async def release(self, conn: Any, admission: Admission | None) -> None:
        """The batch is over: give its slots back (a broken connection leaves them to expire)."""
        if admission is None or not admission.slots:
            return
        slots, admission.slots = admission.slots, []
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await self._give_slots(conn, slots)

    # -- the checks ------------------------------------------------------------------------

    async def _try(self, conn: Any, wanted: int) -> Admission | float:
        """One attempt without waiting: what may be read, or the seconds to wait first."""
        if not (self._slots or self._limit or self._caps):  # group_by alone: a cached pause
            if await self._is_paused(conn):
                return self._waiting("paused", self._quiet_poll)
            self.waiting_for = None
            return Admission(wanted)
        limit = self._limit
        row = await conn.fetchrow(
            _Q["flow_admit"],
            self.pipeline,
            self.step,
            [queue for queue, _ in self._caps],
            [cap for _, cap in self._caps],
            self._key,
            self._slots,
            wanted,
            self._holder,
            self._lease,
            None if limit is None else limit.name,
            None if limit is None else limit.rate,
            None if limit is None else limit.burst,
        )
        self._paused, self._paused_checked = bool(row["paused"]), time.monotonic()
        if self._paused:
            return self._waiting("paused", self._quiet_poll)
        if row["full_queue"] is not None:
            return self._waiting("backpressure", CHECK_INTERVAL)
        granted = int(row["granted"])
        if row["short_of"] == "token":
            return self._waiting("token", float(row["wait"]))
        if not granted:  # short of a slot: until a NOTIFY, or the first lease's end
            lease_end = CHECK_INTERVAL if row["wait"] is None else float(row["wait"])
            return self._waiting("slot", min(max(lease_end, SLOT_RETRY), self._quiet_poll))
        self.waiting_for = None
        return Admission(granted, granted if limit else 0, list(row["slots"]))

    @property
    def _quiet_poll(self) -> float:
        """How long a wait that a NOTIFY ends may last: long only if notifications come."""
        return QUIET_POLL if self.notified else CHECK_INTERVAL

    def _waiting(self, why: str, seconds: float) -> float:
        self.waiting_for = why
        return seconds

    async def _is_paused(self, conn: Any) -> bool:
        """Whether the step is paused, looked up at most once a second by one loop."""
        if time.monotonic() - self._paused_checked < CHECK_INTERVAL:
            return self._paused
        async with self._pause_lock:
            now = time.monotonic()
            if now - self._paused_checked >= CHECK_INTERVAL:  # no other loop looked meanwhile
                since = await conn.fetchval(_Q["paused_since"], self.pipeline, self.step)
                self._paused = since is not None
                self._paused_checked = now
        return self._paused

    @property
    def _limit_name(self) -> str:
        assert self._limit is not None
        return self._limit.name

    async def _give_slots(self, conn: Any, slots: list[int]) -> None:
        await conn.fetchval(_Q["give_slots"], self._key, slots, self._holder)
        self._bell.set()  # loops of this process waiting for a slot look again at once

    async def _sleep(self, stopping: asyncio.Event, seconds: float) -> None:
        """Sleep `seconds` at most: a freed slot, a pause or resume, or `stopping` ends it."""
        self._bell.clear()
        await wait_for_any((stopping, self._bell), max(seconds, 0.001))
