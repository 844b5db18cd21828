"""Fixtures of the fault-injection suite and the report of its figures.

Each scenario comes in two sizes: ``small`` (part of `make test`) and ``large`` (marker
``faults``, `make faults`). The figures of every scenario that ran are printed at the end of
the session, one line each.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import REPORTED, Probe, Runs, Shape, Size, provision, write_project
from tests.support.pgbouncer import pgbouncer, report_skipped

__all__ = ["pgbouncer"]


def sizes(small: Size, large: Size) -> list[Any]:
    """Parameters for the two variants of a scenario."""
    return [
        pytest.param(small, id="small"),
        pytest.param(large, id="large", marks=[pytest.mark.faults, pytest.mark.timeout(1800)]),
    ]


@dataclass
class Scenario:
    """A provisioned database, the project folder the workers run in, and a probe."""

    dsn: str
    root: Path
    probe: Probe
    runs: Runs
    rng: random.Random
    seed: int


@pytest.fixture
async def scenario(
    request: pytest.FixtureRequest, dsn: str, tmp_path: Path
) -> AsyncIterator[Scenario]:
    """Provisions the pipeline with the test's ``@pytest.mark.shape(Shape(...))`` (default:
    `Shape()`) and a random seed, printed on failure; FAULTS_SEED=N replays a run's plans
    (the faults themselves follow the clock, so they differ)."""
    marker = request.node.get_closest_marker("shape")
    shape = marker.args[0] if marker else Shape()
    await provision(dsn, write_project(tmp_path, shape))
    seed = int(os.environ.get("FAULTS_SEED") or random.randrange(1 << 30))
    print(f"random seed {seed}")
    probe = Probe(dsn)
    try:
        yield Scenario(dsn, tmp_path, probe, Runs(), random.Random(seed), seed)
    finally:
        await probe.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "shape(Shape): pipeline settings of a fault scenario")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    report_skipped(terminalreporter)
    if not REPORTED:
        return
    terminalreporter.section("fault injection figures")
    for figures in REPORTED:
        terminalreporter.write_line(figures.line())
