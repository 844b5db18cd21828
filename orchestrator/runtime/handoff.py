"""The hand-off's database calls and the data they carry.

One batch costs a fixed number of round trips, whatever its size: `read` (autocommit: read_ct
counts the attempt durably), BEGIN, `claim` (lock what we still own, fenced by read_ct), the
handlers, then ONE `complete` call (hand off, retry and dead-letter everything, see
``store/sql/functions/20_handoff.sql``), COMMIT. While a queue is busy, `complete` also reads
the next batch and `commit_and_claim` sends COMMIT, BEGIN and that batch's claim together: two
round trips per batch. `extend_lease` and `release` serve long and abandoned batches.

JSON travels as text: payloads and outputs are encoded here once (`db.jsontext`: orjson, with
every digit of big ints and Decimals kept), checked for what PostgreSQL's jsonb refuses (NUL
characters) and for size, and sent as text[]. Bodies are read as text and decoded without
losing digits; a body Python cannot decode does not raise: its `StepMessage` keeps the raw text
and says why (`undecodable`), and that message alone fails.
"""

from __future__ import annotations

import re
import traceback
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from orchestrator.db import jsontext
from orchestrator.db.jsontext import UndecodableJson
from orchestrator.db.named_sql import named_queries
from orchestrator.errors import QueueError
from orchestrator.spec.flow import group_key_path
from orchestrator.spec.models import Pipeline, ResolvedStep

MAX_PAYLOAD_BYTES = 1 << 20
"""Largest payload (serialised JSON) `start` accepts and a handler may return: 1 MiB."""

MAX_ERRORS_KEPT = 5
"""Failed attempts remembered in a message's ``headers.errors`` (the latest ones)."""

MAX_ERROR_MESSAGE = 2000
"""Characters of an exception's message kept in headers (the dead letter keeps all of it)."""

CONTRACT_HEADERS = frozenset(
    {
        "run_id",
        "pipeline",
        "step",
        "parent_id",
        "parent_step",
        "traceparent",
        "sent_at",
        "errors",
        "dead_letter",
        "spec_hash",
        "isolated",
        "isolated_streak",
        "published",
    }
)
"""Header keys the runtime sets; callers of `start` cannot choose them."""

_ISOLATION_HEADERS = frozenset({"isolated", "isolated_streak"})
"""The read cap's evidence (see `bookkeeping.proven_lost`): not kept in dead letters."""

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
# An escaped NUL in orjson's output: \u0000 not itself escaped (preceded by an even number of
# backslashes). jsonb refuses it anywhere, keys included.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


_Q = named_queries("orchestrator.runtime")


# --- JSON ----------------------------------------------------------------------------------


class PayloadError(QueueError):
    """A payload or handler output that cannot be stored as a message body."""


def encode_object(value: object, what: str = "payload") -> str:
    """`value` (a dict) as JSON text; PayloadError says why it cannot be a message body."""
    if type(value) is not dict and not isinstance(value, Mapping):
        raise PayloadError(f"{what} must be a JSON object (a dict), not {_kind(value)}")
    try:
        data = jsontext.dumps(value)
    except TypeError as exc:
        raise PayloadError(f"{what} is not JSON-serialisable: {exc}") from None
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            f"{what} is {len(data):,} bytes of JSON; the limit is {MAX_PAYLOAD_BYTES:,} (1 MiB)"
        )
    text = data.decode()
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        where = _nul_path(value, what) or what
        raise PayloadError(
            f"{where} contains a NUL character (\\u0000), which PostgreSQL cannot store in jsonb"
        )
    return text


def encode_headers(value: Mapping[str, Any]) -> str:
    """Message headers as JSON text (the runtime's own; never user input that needs checks)."""
    return jsontext.dumps(value).decode()


def decode(text: str | None) -> Any:
    """A jsonb column read as text (None for SQL NULL); UndecodableJson when Python cannot."""
    return None if text is None else jsontext.loads(text)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def _nul_path(value: object, path: str) -> str | None:
    """Where the first NUL character is, as ``payload["key"][3]``; None if none is found."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = f"{path}[{key!r}]"
            if isinstance(key, str) and "\x00" in key:
                return f"a key of {path}"
            found = _nul_path(item, here)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _nul_path(item, f"{path}[{index}]")
            if found:
                return found
    return None


# --- messages ------------------------------------------------------------------------------


@dataclass(slots=True)
class StepMessage:
    """A message as read: its fence (msg_id, read_ct), body and headers."""

    msg_id: int
    read_ct: int
    body: Any
    headers: dict[str, Any]
    run_id: str
    """The run id in canonical text form (what the database returns and takes)."""
    undecodable: str | None = None
    """Why the body could not be decoded; `body` is then its JSON text, kept as read."""

    @classmethod
    def from_row(cls, row: Sequence[Any], queue: str = "") -> StepMessage:
        """From a `read` row of `queue`: (msg_id, read_ct, message text, headers text).
        Never raises: a body that cannot be decoded is kept as text (`undecodable`)."""
        try:
            headers = _decode_headers(row[3])
        except UndecodableJson:
            headers = None
        if not isinstance(headers, dict):
            headers = {}
        run_id = _run_id(headers.get("run_id"), queue, row[0])
        try:
            return cls(row[0], row[1], decode(row[2]), headers, run_id)
        except UndecodableJson as exc:
            return cls(row[0], row[1], row[2], headers, run_id, undecodable=str(exc))


def _decode_headers(text: str | None) -> Any:
    """Headers are the runtime's own (no number beyond 64 bits): orjson alone, the exact
    decoder only when orjson refuses."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return jsontext.loads(text)


_FOREIGN_RUNS = uuid.UUID("5d1c1a43-54c7-4f0c-9f3e-6f7a0b3f6a2e")


def _run_id(value: object, queue: str, msg_id: int) -> str:
    """The run id in a message's headers. A message sent without one (by another program)
    starts a run of its own, with an id derived from its queue and msg_id: the same on every
    attempt."""
    if isinstance(value, str):
        if _CANONICAL_UUID.match(value):
            return value
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    return str(uuid.uuid5(_FOREIGN_RUNS, f"{queue}:{msg_id}"))


@dataclass(frozen=True)
class StepTarget:
    """Where a step's messages come from and go to: what `complete` needs besides messages."""

    pipeline: str
    step: str
    queue: str
    routes: str
    """JSON: [{"step", "delay", "expects": null | [predecessors], "spec_hash"}] for each
    successor, plus "group": [key path] for a successor with group_by."""
    archive: bool
    dead_letter_queue: str
    publish: tuple[str, ...] | None = None
    """Routing keys the step's outputs are published with (None: it publishes nothing)."""

    @classmethod
    def of(cls, pipeline: Pipeline, step: ResolvedStep) -> StepTarget:
        routes = []
        spec_hash = pipeline.spec_hash()
        for name in step.successors:
            successor = pipeline.step(name)
            route: dict[str, Any] = {
                "step": name,
                "delay": successor.delay,
                "expects": list(successor.predecessors) if successor.is_join else None,
                "spec_hash": spec_hash,
            }
            if successor.group_by:
                route["group"] = group_key_path(successor.group_by)
            routes.append(route)
        return cls(
            pipeline=pipeline.name,
            step=step.name,
            queue=step.queue,
            routes=orjson.dumps(routes).decode(),
            archive=pipeline.queues.archive.enabled,
            dead_letter_queue=pipeline.dead_letter_queue,
            publish=step.publish or None,
        )


# --- failures ------------------------------------------------------------------------------


def error_record(attempt: int, error: BaseException) -> dict[str, Any]:
    """One entry of ``headers.errors``: attempt, exception type, message, time."""
    return {
        "attempt": attempt,
        "type": type(error).__name__,
        "message": _message(error)[:MAX_ERROR_MESSAGE],
        "at": datetime.now(UTC).isoformat(),
    }


def with_error(headers: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """`headers` with `record` appended to ``errors`` (the last MAX_ERRORS_KEPT kept)."""
    errors = headers.get("errors")
    history = list(errors) if isinstance(errors, list) else []
    history.append(dict(record))
    return {**headers, "errors": history[-MAX_ERRORS_KEPT:]}


def dead_letter_body(
    target: StepTarget,
    message: StepMessage,
    error: BaseException,
    *,
    permanent: bool,
    headers: Mapping[str, Any],
) -> dict[str, Any]:
    """The dead letter of `message` (docs/architecture.md; ``failed_at`` is set in SQL).

    Its parts are always storable: the payload and headers were read from jsonb, and error
    texts have their NUL characters spelled out.
    """
    return {
        "pipeline": target.pipeline,
        "step": target.step,
        "queue": target.queue,
        "run_id": message.run_id,
        "msg_id": message.msg_id,
        "payload": message.body,
        "headers": {k: v for k, v in headers.items() if k not in _ISOLATION_HEADERS},
        "attempts": message.read_ct,
        "permanent": permanent,
        "error": {
            "type": type(error).__name__,
            "message": _message(error),
            "traceback": _storable("".join(traceback.format_exception(error))),
        },
    }


def _message(error: BaseException) -> str:
    return _storable(str(error) or type(error).__name__)


def _storable(text: str) -> str:
    """`text` with NUL characters spelled out: jsonb cannot store them."""
    return text.replace("\x00", "\\x00") if "\x00" in text else text


# --- the calls -----------------------------------------------------------------------------


@dataclass
class Outcomes:
    """What a batch's `complete` call does: hand-offs, retries and dead letters."""

    done_ids: list[int] = field(default_factory=list)
    done_read_cts: list[int] = field(default_factory=list)
    done_run_ids: list[str] = field(default_factory=list)
    done_outputs: list[str] = field(default_factory=list)
    retry_ids: list[int] = field(default_factory=list)
    retry_read_cts: list[int] = field(default_factory=list)
    retry_delays: list[float] = field(default_factory=list)
    retry_headers: list[str] = field(default_factory=list)
    dead_ids: list[int] = field(default_factory=list)
    dead_read_cts: list[int] = field(default_factory=list)
    dead_bodies: list[str] = field(default_factory=list)

    def done(self, message: StepMessage, output: str) -> None:
        self.done_ids.append(message.msg_id)
        self.done_read_cts.append(message.read_ct)
        self.done_run_ids.append(message.run_id)
        self.done_outputs.append(output)

    def undo_done(self, message: StepMessage) -> None:
        """Take back the last hand-off recorded for `message`."""
        index = len(self.done_ids) - 1 - self.done_ids[::-1].index(message.msg_id)
        for column in (self.done_ids, self.done_read_cts, self.done_run_ids, self.done_outputs):
            del column[index]

    def retry(self, message: StepMessage, delay: float, headers: Mapping[str, Any]) -> None:
        self.retry_ids.append(message.msg_id)
        self.retry_read_cts.append(message.read_ct)
        self.retry_delays.append(delay)
        self.retry_headers.append(encode_headers(headers))

    def dead(self, message: StepMessage, body: Mapping[str, Any]) -> None:
        self.dead_ids.append(message.msg_id)
        self.dead_read_cts.append(message.read_ct)
        self.dead_bodies.append(jsontext.dumps(body).decode())

    def failures_only(self) -> Outcomes:
        """These outcomes without the hand-offs."""
        return Outcomes(
            retry_ids=self.retry_ids,
            retry_read_cts=self.retry_read_cts,
            retry_delays=self.retry_delays,
            retry_headers=self.retry_headers,
            dead_ids=self.dead_ids,
            dead_read_cts=self.dead_read_cts,
            dead_bodies=self.dead_bodies,
        )

    def __len__(self) -> int:
        return len(self.done_ids) + len(self.retry_ids) + len(self.dead_ids)


@dataclass(frozen=True)
class Completion:
    """What a `complete` call did."""

    handed_off: int
    sent: int
    """Messages sent to the next steps, and published (one per routing key and bound queue)."""
    joins_completed: int
    retried: int
    dead_lettered: int


async def read(conn: Any, queue: str, vt_seconds: int, qty: int) -> list[StepMessage]:
    """Read up to `qty` messages, hidden for `vt_seconds` (run outside a transaction)."""
    rows = await conn.fetch(_Q["read"], queue, vt_seconds, qty)
    return [StepMessage.from_row(row, queue) for row in rows]


async def claim(conn: Any, queue: str, messages: Iterable[StepMessage]) -> set[int]:
    """Lock the messages still owned, and their runs (in the caller's transaction); their
    msg_ids. Messages of runs cancelled by then are deleted, not claimed."""
    messages = list(messages)
    ids, cts = _fence(messages)
    rows = await conn.fetch(_Q["claim"], queue, ids, cts, [m.run_id for m in messages])
    return {row[0] for row in rows}


async def complete(
    conn: Any,
    target: StepTarget,
    outcomes: Outcomes,
    *,
    read_next: tuple[int, int] | None = None,
) -> tuple[Completion, list[StepMessage]]:
    """Hand off (and publish), retry and dead-letter in one round trip (in the claim's
    transaction).

    With `read_next` = (vt seconds, qty), the same statement then reads the next batch of
    `target.queue`: it returns those messages too, read in the caller's transaction.
    """
    o = outcomes
    args = (
        target.pipeline,
        target.step,
        target.routes,
        target.archive,
        target.dead_letter_queue,
        o.done_ids,
        o.done_read_cts,
        o.done_run_ids,
        o.done_outputs,
        o.retry_ids,
        o.retry_read_cts,
        o.retry_delays,
        o.retry_headers,
        o.dead_ids,
        o.dead_read_cts,
        o.dead_bodies,
        target.publish,
    )
    if read_next is None:
        row = await conn.fetchrow(_Q["complete"], *args)
        return Completion(*row), []
    rows = await conn.fetch(_Q["complete_and_read"], *args, target.queue, *read_next)
    done = Completion(*rows[0][:5])
    following = [
        StepMessage.from_row(tuple(row)[5:], target.queue) for row in rows if row[5] is not None
    ]
    return done, following


async def commit_and_claim(conn: Any) -> bool:
    """COMMIT the batch whose `complete` read the next one ahead, BEGIN the next batch's
    transaction and claim every message read ahead, in one round trip; True when all of them
    were claimed. False when one was no longer owned (a cancel deleted it, its read lapsed) or
    the claim failed: the new transaction is then open and empty, for `claim` to say which
    are still owned. A COMMIT the server refused raises (nothing of the batch happened)."""
    try:
        await conn.execute(_Q["commit_and_claim"])
    except asyncpg.PostgresError:
        if not conn.is_in_transaction():
            raise  # the COMMIT failed: no new transaction was begun
        await conn.execute("ROLLBACK; BEGIN ISOLATION LEVEL READ COMMITTED")
        return False
    return True


async def extend_lease(
    conn: Any, queue: str, messages: Iterable[StepMessage], seconds: float
) -> int:
    """Move the vt of owned messages to `seconds` from now; how many were still owned."""
    ids, cts = _fence(messages)
    moved: int = await conn.fetchval(_Q["extend_lease"], queue, ids, cts, seconds)
    return moved


async def isolate(conn: Any, queue: str, message: StepMessage) -> bool:
    """Record, committed, that `message` runs alone at this read (outside a transaction)."""
    owned: bool = await conn.fetchval(_Q["isolate"], queue, message.msg_id, message.read_ct)
    return owned


async def unisolate(conn: Any, queue: str, message: StepMessage) -> bool:
    """Take back `isolate`'s mark: this process outlived the run alone (outside a transaction)."""
    taken: bool = await conn.fetchval(_Q["unisolate"], queue, message.msg_id, message.read_ct)
    return taken


async def unread(conn: Any, queue: str, messages: Iterable[StepMessage]) -> int:
    """Give owned messages back as if this read never happened (outside a transaction)."""
    return await _fenced(conn, "unread", queue, messages)


async def release(conn: Any, queue: str, messages: Iterable[StepMessage]) -> int:
    """Make owned messages visible at once (outside their batch's transaction)."""
    return await _fenced(conn, "release", queue, messages)


async def _fenced(conn: Any, query: str, queue: str, messages: Iterable[StepMessage]) -> int:
    """Run fenced query `query` on `messages`; how many were still owned."""
    ids, cts = _fence(messages)
    if not ids:
        return 0
    count: int = await conn.fetchval(_Q[query], queue, ids, cts)
    return count


def _fence(messages: Iterable[StepMessage]) -> tuple[list[int], list[int]]:
    ids: list[int] = []
    cts: list[int] = []
    for m in messages:
        ids.append(m.msg_id)
        cts.append(m.read_ct)
    return ids, cts
