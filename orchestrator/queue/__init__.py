"""The PGMQ-compatible queue layer: SQL functions in package data, installer, async client.

Owns: schema `pgmq` (tables, types, functions of PGMQ's API, native partition maintenance),
`orchestrator install`, the `Queue` client and the synchronous `PGMQueue` facade.
Must not import: spec, compiler, runtime, ops, cli (it knows nothing of pipelines).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.queue.client import (
        InvalidQueueName,
        Queue,
        QueueNotFound,
        notify_channel,
        validate_queue_name,
    )
    from orchestrator.queue.models import (
        Message,
        NotifyThrottle,
        QueueInfo,
        QueueMetrics,
        TopicBinding,
    )
    from orchestrator.queue.sync import PGMQueue

# Re-exports load on first use, so importing a sibling module (sqlfiles, install) stays cheap.
_EXPORTS = {
    "InvalidQueueName": "orchestrator.queue.client",
    "Queue": "orchestrator.queue.client",
    "QueueNotFound": "orchestrator.queue.client",
    "notify_channel": "orchestrator.queue.client",
    "validate_queue_name": "orchestrator.queue.client",
    "Message": "orchestrator.queue.models",
    "QueueInfo": "orchestrator.queue.models",
    "QueueMetrics": "orchestrator.queue.models",
    "NotifyThrottle": "orchestrator.queue.models",
    "TopicBinding": "orchestrator.queue.models",
    "PGMQueue": "orchestrator.queue.sync",
}

__all__ = [
    "InvalidQueueName",
    "Message",
    "NotifyThrottle",
    "PGMQueue",
    "Queue",
    "QueueInfo",
    "QueueMetrics",
    "QueueNotFound",
    "TopicBinding",
    "notify_channel",
    "validate_queue_name",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
