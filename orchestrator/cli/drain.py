"""`orchestrator run --drain` on a terminal: how far the drain is, while the workers work.

Every second the step queues' metrics (`Queue.metrics`) say how many messages each holds and
how many were ever sent to it; from the first reading on, a message that left a queue was
handled (handed off, or dead-lettered). The line shows messages handled out of those known so
far, the rate, the time left at that rate, the runs finished (messages handled by the last
steps) and what each step still holds. Reading the metrics never slows the workers: one
connection, one query per queue per second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from orchestrator.cli.progress import Progress
from orchestrator.errors import OrchestratorError

EVERY = 1.0


async def with_drain_progress(
    work: Awaitable[int], dsn: str, queues: Mapping[str, str], ends: Sequence[str]
) -> int:
    """Await `work`, showing the drain of `queues` (step label -> queue) meanwhile; nothing is
    shown when `queues` is empty."""
    if not queues:
        return await work
    watcher = asyncio.create_task(_watch(dsn, queues, ends))
    try:
        return await work
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, OrchestratorError):
            await watcher


async def _watch(dsn: str, queues: Mapping[str, str], ends: Sequence[str]) -> None:
    from orchestrator.queue import Queue

    progress = Progress("drain", total=0, every=0)
    async with Queue.connect(dsn, min_size=1, max_size=1) as client:
        first = await _readings(client, queues.values())
        try:
            while True:
                await asyncio.sleep(EVERY)
                now = await _readings(client, queues.values())
                _show(progress, first, now, queues, ends)
        finally:
            progress.finish()


async def _readings(client: Any, queues: Any) -> dict[str, tuple[int, int]]:
    """Per queue: (messages held now, messages ever sent)."""
    found = {}
    for queue in dict.fromkeys(queues):
        metrics = await client.metrics(queue)
        found[queue] = (metrics.queue_length, metrics.total_messages)
    return found


def handled(first: tuple[int, int], now: tuple[int, int]) -> int:
    """Messages that left a queue between two readings (held then + sent since - held now)."""
    return max(0, first[0] + (now[1] - first[1]) - now[0])


def _show(
    progress: Progress,
    first: Mapping[str, tuple[int, int]],
    now: Mapping[str, tuple[int, int]],
    queues: Mapping[str, str],
    ends: Sequence[str],
) -> None:
    done = sum(handled(first[q], now[q]) for q in now)
    progress.total = done + sum(length for length, _ in now.values())
    runs = sum(handled(first[q], now[q]) for q in dict.fromkeys(ends))
    left = [f"{label} {now[q][0]}" for label, q in queues.items() if now[q][0]]
    progress.detail = f"; runs finished {runs}" + (f"; left: {', '.join(left)}" if left else "")
    progress.update(done)
