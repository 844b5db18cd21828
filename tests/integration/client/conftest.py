"""Fixtures of the queue client tests: a `Queue` over the test database's pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestrator.queue import Queue


@pytest.fixture
async def q(pool: Any) -> AsyncIterator[Queue]:
    """A client over the per-test pool, with an empty queue `jobs`."""
    client = Queue(pool)
    await client.create("jobs")
    yield client
    await client.close()
