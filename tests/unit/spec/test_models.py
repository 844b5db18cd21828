"""The typed API the compiler and runtime build on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.errors import ConfigError
from orchestrator.spec import Pipeline, RetryPolicy, parse_pipeline
from orchestrator.spec.diagnostics import InvalidPipeline

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def work_orders() -> Pipeline:
    path = ROOT / "pipelines" / "work_orders.yaml"
    return parse_pipeline(path.read_text(), str(path))


def test_graph_accessors(work_orders: Pipeline) -> None:
    assert work_orders.name == "work_orders"
    assert work_orders.entry_step == "import"
    assert work_orders.order == ("import", "barcode", "sap_sync", "email", "report")
    assert work_orders.successors("barcode") == ("sap_sync", "email")
    assert work_orders.predecessors("report") == ("sap_sync", "email")
    assert work_orders.is_join("report") and not work_orders.is_join("email")
    assert work_orders.joins == ("report",)
    assert work_orders.predecessors("import") == ()


def test_queue_names(work_orders: Pipeline) -> None:
    assert work_orders.queue_name("barcode") == "work_orders__barcode"
    assert work_orders.dead_letter_queue == "work_orders_dlq"
    assert work_orders.queue_names()[-1] == "work_orders_dlq"
    assert len(work_orders.queue_names()) == 6


def test_unknown_step_is_a_key_error(work_orders: Pipeline) -> None:
    with pytest.raises(KeyError, match="no step 'nope'"):
        work_orders.step("nope")


def test_resolved_step_merges_defaults(work_orders: Pipeline) -> None:
    sap = work_orders.step("sap_sync")
    assert sap.retry == RetryPolicy(
        max_attempts=5, backoff="exponential", initial=2.0, max=300.0, jitter=True
    )
    assert (sap.timeout, sap.visibility_timeout, sap.delay) == (30.0, 60.0, 0.0)
    assert sap.queue == "work_orders__sap_sync" and sap.pipeline == "work_orders"
    barcode = work_orders.step("barcode")
    assert (barcode.concurrency, barcode.batch_size) == (4, 10)
    assert work_orders.step("email").delay > 0
    assert work_orders.step("report").is_join and work_orders.step("report").is_terminal
    assert work_orders.step("import").is_entry


def test_queue_settings(work_orders: Pipeline) -> None:
    queues = work_orders.queues
    assert queues.partitioned is not None and queues.partitioned.interval == 86400.0
    assert queues.archive.enabled and queues.archive.retention == 30 * 86400.0
    assert queues.notify.enabled and queues.notify.throttle == 0.25
    assert not queues.unlogged


def minimal(**extra: object) -> dict[str, object]:
    return {"pipeline": "p", "steps": {"a": {"handler": "m:f"}}, **extra}


def test_built_in_defaults() -> None:
    step = Pipeline.model_validate(minimal()).step("a")
    assert (step.visibility_timeout, step.timeout, step.delay) == (60.0, 30.0, 0.0)
    assert (step.concurrency, step.batch_size) == (1, 1)
    assert step.retry == RetryPolicy()
    assert RetryPolicy() == RetryPolicy(
        max_attempts=3, backoff="exponential", initial=1.0, max=300.0, jitter=True
    )


def test_shorthands() -> None:
    pipeline = Pipeline.model_validate(
        minimal(
            queues={"archive": False, "notify": False},
            schedule={"cron": "@daily"},
            steps={"a": {"handler": "m:f", "next": "b"}, "b": {"handler": "m:g"}},
        )
    )
    assert not pipeline.queues.archive.enabled and not pipeline.queues.notify.enabled
    assert [s.cron for s in pipeline.schedules] == ["@daily"]
    assert pipeline.successors("a") == ("b",)


def test_next_and_after_may_name_the_same_edge() -> None:
    pipeline = Pipeline.model_validate(
        minimal(
            steps={"a": {"handler": "m:f", "next": ["b"]}, "b": {"handler": "m:g", "after": "a"}}
        )
    )
    assert pipeline.successors("a") == ("b",) and not pipeline.is_join("b")


def test_invalid_graph_raises_a_validation_error_with_issues() -> None:
    data = minimal(steps={"a": {"handler": "m:f", "next": ["a"]}})
    with pytest.raises(ValidationError) as info:
        Pipeline.model_validate(data)
    cause = info.value.errors()[0]["ctx"]["error"]
    assert isinstance(cause, InvalidPipeline)
    assert cause.issues[0].message.startswith("cycle: a -> a")


def test_spec_hash_ignores_formatting_and_where_settings_live() -> None:
    block = parse_pipeline(
        "pipeline: p\ndefaults:\n  timeout: 10s\nsteps:\n  a:\n    handler: m:f\n"
    )
    flow = parse_pipeline('{steps: {a: {handler: "m:f", timeout: 10}}, pipeline: p}  # same')
    assert block.spec_hash() == flow.spec_hash()
    assert len(block.spec_hash()) == 64
    other = parse_pipeline("pipeline: p\nsteps:\n  a: {handler: 'm:f', timeout: 11s}\n")
    assert other.spec_hash() != block.spec_hash()


def test_to_json_is_resolved_and_json_ready(work_orders: Pipeline) -> None:
    import json

    data = work_orders.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["entry_step"] == "import"
    assert data["steps"]["sap_sync"]["retry"]["max_attempts"] == 5
    assert data["steps"]["report"]["predecessors"] == ["sap_sync", "email"]
    assert data["dead_letter_queue"] == "work_orders_dlq"


def test_models_are_frozen(work_orders: Pipeline) -> None:
    with pytest.raises(ValidationError):
        work_orders.name = "other"  # type: ignore[misc]


def test_schedule_next_after_uses_its_time_zone() -> None:
    pipeline = parse_pipeline(
        "pipeline: r\nschedule: {cron: '0 6 * * *', timezone: Europe/Berlin}\n"
        "steps:\n  a: {handler: 'm:f'}\n"
    )
    schedule = pipeline.schedules[0]
    tick = schedule.next_after(datetime(2024, 7, 1, 12, 0, tzinfo=UTC))
    assert tick.astimezone(UTC) == datetime(2024, 7, 2, 4, 0, tzinfo=UTC)
    assert schedule.key == "0 6 * * *" and schedule.payload == {} and schedule.catch_up == 0


def test_parse_pipeline_raises_config_error_listing_everything() -> None:
    with pytest.raises(ConfigError) as info:
        parse_pipeline("pipeline: P\nsteps:\n  a: {handler: x, concurrancy: 2}\n", "x.yaml")
    message = str(info.value)
    assert message.startswith("3 errors in pipeline files:")
    assert "x.yaml:1:11: error: invalid name 'P'" in message
    assert "x.yaml:3:19: error: unknown key 'concurrancy'" in message
    assert "x.yaml:3:16: error: malformed handler 'x'" in message


def test_join_retention_defaults_to_30_days_and_leaves_the_hash_alone() -> None:
    steps = {
        "a": {"handler": "m:f", "next": ["b", "c"]},
        "b": {"handler": "m:f"},
        "c": {"handler": "m:f"},
        "d": {"handler": "m:f", "after": ["b", "c"]},
    }
    plain = Pipeline.model_validate({"pipeline": "p", "steps": steps})
    assert plain.join_settings.incomplete_retention == 30 * 86400
    assert "joins" not in plain.to_json()  # pipelines applied before keep their hash
    same = Pipeline.model_validate(
        {"pipeline": "p", "joins": {"incomplete_retention": "30 days"}, "steps": steps}
    )
    assert same.spec_hash() == plain.spec_hash()
    short = Pipeline.model_validate(
        {"pipeline": "p", "joins": {"incomplete_retention": "2 days"}, "steps": steps}
    )
    assert short.to_json()["joins"] == {"incomplete_retention": 2 * 86400}
    assert short.spec_hash() != plain.spec_hash()
