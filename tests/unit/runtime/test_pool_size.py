"""How many connections a worker's pool may open: one per concurrent batch, plus a few."""

from __future__ import annotations

from orchestrator.runtime.worker import (
    LEASE_CONNECTIONS,
    SPARE_CONNECTIONS,
    StepPlan,
    WorkerConfig,
)
from orchestrator.spec import HandlerInfo, parse_pipeline


async def _noop(payload: dict[str, object], ctx: object) -> None:
    return None


HANDLER = HandlerInfo("tests:noop", _noop, True, True)


def _config(steps: int, concurrency: int) -> WorkerConfig:
    lines = ["pipeline: p", f"defaults: {{concurrency: {concurrency}}}", "steps:"]
    for s in range(steps):
        lines.append(
            f"  s{s}: {{handler: tests:noop{', next: s' + str(s + 1) if s + 1 < steps else ''}}}"
        )
    pipeline = parse_pipeline("\n".join(lines) + "\n")
    plans = tuple(StepPlan(pipeline, pipeline.step(name), HANDLER) for name in pipeline.order)
    return WorkerConfig(dsn="postgresql:///unused", steps=plans)


def test_many_idle_steps_do_not_ask_for_a_connection_each_beyond_their_batches() -> None:
    # 50 steps of concurrency 1: 50 batches at most, not 50 more for lease extensions.
    assert _config(50, 1).pool_size == 50 + LEASE_CONNECTIONS + SPARE_CONNECTIONS


def test_a_few_steps_get_one_lease_connection_each() -> None:
    assert _config(2, 3).pool_size == 6 + 2 + SPARE_CONNECTIONS


def test_concurrency_is_never_cut() -> None:
    assert _config(1, 40).pool_size == 40 + 1 + SPARE_CONNECTIONS
