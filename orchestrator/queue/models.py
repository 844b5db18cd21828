"""Typed rows of the queue API: messages, queue metrics and the queue list.

Each is a frozen dataclass with slots whose fields follow the column order of the SQL type it
mirrors (`pgmq.message_record`, `pgmq.metrics_result`, `pgmq.queue_record`), so a row becomes
an object with one positional call. A `Message` also answers `msg["message"]` and
`msg["msg_id"]`, the dict-style access that PGMQ's Python examples use.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

# A decoded jsonb value: dict, list, str, int, float, bool or None.
JSON = Any


@dataclass(frozen=True, slots=True)
class Message:
    """One message as `read`, `pop` and `set_vt` return it (`pgmq.message_record`)."""

    msg_id: int
    read_ct: int
    enqueued_at: datetime
    last_read_at: datetime | None
    vt: datetime
    message: JSON
    headers: JSON

    @classmethod
    def from_record(cls, record: Any) -> Message:
        """Build from an asyncpg Record (or any row) in `pgmq.message_record` column order."""
        return cls(*record)

    def __getitem__(self, key: str) -> Any:
        if key not in _MESSAGE_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """`msg.get("headers")`, like a dict row."""
        return getattr(self, key) if key in _MESSAGE_FIELDS else default

    def keys(self) -> tuple[str, ...]:
        return _MESSAGE_FIELDS

    def __iter__(self) -> Iterator[str]:
        return iter(_MESSAGE_FIELDS)

    def __len__(self) -> int:
        return len(_MESSAGE_FIELDS)

    def __contains__(self, key: object) -> bool:
        return key in _MESSAGE_FIELDS

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _MESSAGE_FIELDS)

    def items(self) -> tuple[tuple[str, Any], ...]:
        return tuple((name, getattr(self, name)) for name in _MESSAGE_FIELDS)

    def as_dict(self) -> dict[str, Any]:
        """The message as a plain dict (column name -> value)."""
        return {name: getattr(self, name) for name in _MESSAGE_FIELDS}


_MESSAGE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Message))
Mapping.register(Message)

# A read returns up to hundreds of messages per call, so building them is on the hot path. The
# __init__ dataclass generates for a frozen class goes through object.__setattr__ field by
# field; this one stores into the slots directly (same arguments, about twice as fast). The
# instances stay frozen: assignment still raises.
(
    _set_msg_id,
    _set_read_ct,
    _set_enqueued_at,
    _set_last_read_at,
    _set_vt,
    _set_message,
    _set_headers,
) = (vars(Message)[name].__set__ for name in _MESSAGE_FIELDS)


def _message_init(
    self: Message,
    msg_id: int,
    read_ct: int,
    enqueued_at: datetime,
    last_read_at: datetime | None,
    vt: datetime,
    message: JSON,
    headers: JSON,
) -> None:
    _set_msg_id(self, msg_id)
    _set_read_ct(self, read_ct)
    _set_enqueued_at(self, enqueued_at)
    _set_last_read_at(self, last_read_at)
    _set_vt(self, vt)
    _set_message(self, message)
    _set_headers(self, headers)


_message_init.__qualname__ = "Message.__init__"
setattr(Message, "__init__", _message_init)  # noqa: B010 (mypy refuses a direct assignment)


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """`pgmq.metrics()` for one queue. Ages are None when the queue is empty."""

    queue_name: str
    queue_length: int
    newest_msg_age_sec: int | None
    oldest_msg_age_sec: int | None
    total_messages: int
    scrape_time: datetime
    queue_visible_length: int
    # Estimated rows in a partitioned queue's default partitions; None when not partitioned
    # (and from a database whose queue layer predates the column).
    default_partition_length: int | None = None

    @classmethod
    def from_record(cls, record: Any) -> QueueMetrics:
        """Build from a row in `pgmq.metrics_result` column order."""
        return cls(*record)


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One row of `pgmq.list_queues()`."""

    queue_name: str
    is_partitioned: bool
    is_unlogged: bool
    created_at: datetime

    @classmethod
    def from_record(cls, record: Any) -> QueueInfo:
        """Build from a row in `pgmq.queue_record` column order."""
        return cls(*record)


@dataclass(frozen=True, slots=True)
class TopicBinding:
    """One row of `pgmq.list_topic_bindings()` (`bound_at` is None from `test_routing`)."""

    pattern: str
    queue_name: str
    bound_at: datetime | None
    compiled_regex: str


@dataclass(frozen=True, slots=True)
class NotifyThrottle:
    """One row of `pgmq.list_notify_insert_throttles()`."""

    queue_name: str
    throttle_interval_ms: int
    last_notified_at: datetime
