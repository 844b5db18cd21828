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
    shown when `queues` is empty. The first reading is taken before the work starts, the last
    one after it ends, so the final line counts every message the drain handled."""
    if not queues:
        return await work
    from orchestrator.queue import Queue

    async with Queue.connect(dsn, min_size=1, max_size=1) as client:
        first = await _readings(client, queues.values())
        stop = asyncio.Event()
        progress = Progress("drain", total=0, every=0)
        watcher = asyncio.create_task(_watch(client, first, queues, ends, progress, stop))
        try:
            return await work
        finally:
            stop.set()
            with contextlib.suppress(OrchestratorError, OSError):
                await watcher
            progress.finish()


async def _watch(
    client: Any,
    first: Mapping[str, tuple[int, int]],
    queues: Mapping[str, str],
    ends: Sequence[str],
    progress: Progress,
    stop: asyncio.Event,
) -> None:
    """Show the progress every EVERY seconds, and once more when `stop` is set."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), EVERY)
        now = await _readings(client, queues.values())
        _show(progress, first, now, queues, ends)


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
