"""The applied-pipeline read model, from the canonical JSON that `apply` stores."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from orchestrator.errors import ConfigError, NotFound
from orchestrator.spec import load_pipelines_or_raise
from orchestrator.state import from_spec

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def stored(spec: dict) -> dict:  # type: ignore[type-arg]
    """The document as it comes back from jsonb: key order is lost."""
    return orjson.loads(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS))


@pytest.mark.parametrize("name", ["work_orders", "reports"])
def test_repository_pipelines_read_back(name: str) -> None:
    [model] = [p for p in load_pipelines_or_raise(ROOT / "pipelines") if p.name == name]
    applied = from_spec(stored(model.to_json()), model.spec_hash(), NOW)
    assert applied.name == model.name
    assert applied.step_names == model.order
    assert applied.entry_step == model.entry_step
    assert applied.dead_letter_queue == model.dead_letter_queue
    assert applied.queue_names() == model.queue_names()
    assert applied.schedules == model.schedules
    assert applied.archive_retention == model.queues.archive.retention
    assert applied.partitioned == (model.queues.partitioned is not None)
    for step in model.resolved_steps():
        mine = applied.step(step.name)
        assert (mine.queue, mine.visibility_timeout, mine.delay) == (
            step.queue,
            step.visibility_timeout,
            step.delay,
        )


def test_unknown_step_suggests() -> None:
    [model] = [p for p in load_pipelines_or_raise(ROOT / "pipelines") if p.name == "work_orders"]
    applied = from_spec(model.to_json(), model.spec_hash(), NOW)
    with pytest.raises(NotFound, match=r"no step 'barcod' \(did you mean 'barcode'\?\)"):
        applied.step("barcod")


def test_unreadable_documents() -> None:
    with pytest.raises(ConfigError, match="spec format 99"):
        from_spec({"format": 99, "pipeline": "x"}, "h", NOW)
    with pytest.raises(ConfigError, match="not readable"):
        from_spec({"format": 1, "pipeline": "x"}, "h", NOW)
