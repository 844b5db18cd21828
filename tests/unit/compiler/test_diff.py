"""The plan as a pure function of the desired state and the catalog."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from orchestrator.compiler.catalog import (
    ActualQueue,
    Catalog,
    Depth,
    JoinCount,
)
from orchestrator.compiler.desired import (
    DesiredState,
    PartitionLayout,
    QueueState,
    Storage,
    desired_state,
)
from orchestrator.compiler.planner import Plan, diff
from orchestrator.compiler.spec_diff import spec_changes
from orchestrator.errors import ConfigError
from orchestrator.queue import sqlfiles
from orchestrator.spec import parse_pipeline
from orchestrator.state import AppliedRecord, Layers
from orchestrator.store.install import VERSION as STORE_VERSION

ORDERS = """
pipeline: orders
steps:
  receive: {handler: app.orders:receive, next: [ship, bill]}
  ship: {handler: app.orders:ship}
  bill: {handler: app.orders:bill}
  close: {handler: app.orders:close, after: [ship, bill]}
"""
SMALLER = """
pipeline: orders
steps:
  receive: {handler: app.orders:receive, next: [ship]}
  ship: {handler: app.orders:ship}
"""

CURRENT = Layers(
    queue_version=sqlfiles.latest_version(),
    queue_functions_current=True,
    store_version=STORE_VERSION,
    store_current=True,
    has_pgmq=True,
    has_partitions=True,
    has_pipelines=True,
    has_joins=True,
)


def state(*texts: str) -> DesiredState:
    return desired_state(parse_pipeline(text) for text in texts)


def actual(queue: QueueState) -> ActualQueue:
    """The queue as the catalog shows it once applied."""
    return ActualQueue(
        name=queue.name,
        is_partitioned=queue.storage.partition is not None,
        has_table=True,
        has_archive=True,
        meta_unlogged=queue.storage.unlogged,
        storage=queue.storage,
        run_id_tables=frozenset(queue.run_id_tables),
        fifo_index=queue.group_by is not None,
    )


def applied_catalog(desired: DesiredState, **changes: object) -> Catalog:
    """The catalog right after `desired` was applied, with `changes` on top."""
    catalog = Catalog(
        layers=CURRENT,
        queues={name: actual(q) for name, q in desired.queues.items()},
        applied={
            name: AppliedRecord(name, p.spec, p.spec_hash, p.entry_step, datetime.now(UTC))
            for name, p in desired.pipelines.items()
        },
    )
    return replace(catalog, **changes)  # type: ignore[arg-type]


def heads(plan: Plan) -> list[str]:
    return [c.describe()[0] for c in plan.changes]


def test_applied_state_plans_nothing() -> None:
    desired = state(ORDERS)
    result = diff(desired, applied_catalog(desired))
    assert result.empty and result.summary() == "No changes"


def test_fresh_database_installs_then_creates() -> None:
    desired = state(ORDERS)
    result = diff(desired, Catalog())
    assert [c.subject for c in result.changes] == [
        "queue layer",
        "schema orchestrator",
        "queue orders__receive",
        "queue orders__ship",
        "queue orders__bill",
        "queue orders__close",
        "queue orders_dlq",
        "pipeline orders",
    ]
    assert not result.changes[0].statements
    assert result.sql().startswith("-- + queue layer: install version")
    assert not result.drift and not result.destructive


def test_outdated_layers_are_upgraded() -> None:
    desired = state(ORDERS)
    layers = replace(CURRENT, queue_version=1, store_current=False)
    result = diff(desired, applied_catalog(desired, layers=layers))
    assert heads(result) == [
        f"~ queue layer: upgrade from version 1 to {sqlfiles.latest_version()}",
        f"~ schema orchestrator: update to version {STORE_VERSION}",
    ]


def test_a_queue_dropped_by_hand_is_drift() -> None:
    desired = state(ORDERS)
    queues = {n: q for n, q in applied_catalog(desired).queues.items() if n != "orders__ship"}
    result = diff(desired, applied_catalog(desired, queues=queues))
    (change,) = result.changes
    assert change.drift and change.subject == "queue orders__ship"
    assert change.statements[0] == (
        "SELECT pgmq.create('orders__ship');\nSELECT pgmq.enable_notify_insert('orders__ship', 10);"
    )
    assert result.summary() == "1 change (1 drift)"


def test_removed_steps_are_dropped_and_measured_later() -> None:
    before = state(ORDERS)
    result = diff(state(SMALLER), applied_catalog(before))
    drops = [c for c in result.changes if c.symbol == "-"]
    assert [(c.subject, c.at_risk) for c in drops] == [
        ("queue orders__bill", "orders__bill"),
        ("queue orders__close", "orders__close"),
    ]
    assert not result.destructive
    measured = replace(drops[0], depth=Depth(messages=3, archived=2))
    assert measured.destructive
    assert measured.describe()[0] == (
        "- queue orders__bill: drop (step bill is no longer in pipeline orders); "
        "holds 3 messages and 2 archived [destructive]"
    )
    record = result.changes[-1]
    assert record.subject == "pipeline orders" and record.symbol == "~"
    assert "steps.close: removed" in record.details


def test_queues_of_others_are_left_alone_but_strays_of_a_pipeline_are_not() -> None:
    desired = state(ORDERS)
    catalog = applied_catalog(desired)
    stray = QueueState("orders__old", "orders", "old", Storage())
    other = QueueState("scratch", "scratch", None, Storage())
    queues = {**catalog.queues, "orders__old": actual(stray), "scratch": actual(other)}
    result = diff(desired, replace(catalog, queues=queues))
    assert heads(result) == ["- queue orders__old: drop (step old is no longer in pipeline orders)"]


def test_a_removed_pipeline_is_dropped_and_forgotten_even_with_an_unreadable_spec() -> None:
    old = state(ORDERS)
    catalog = applied_catalog(old)
    unreadable = replace(catalog.applied["orders"], spec={"format": 99})
    catalog = replace(
        catalog,
        applied={"orders": unreadable},
        joins={("orders", "close"): JoinCount(open=2, total=5)},
    )
    result = diff(state(SMALLER.replace("orders", "other")), catalog)
    dropped = sorted(
        c.at_risk or "" for c in result.changes if c.kind == "queue" and c.symbol == "-"
    )
    assert dropped == sorted(old.queues)
    (forget,) = [c for c in result.changes if c.subject == "pipeline orders"]
    assert forget.symbol == "-" and forget.open_joins == 2 and forget.destructive


def test_layout_changes_convert_and_retention_changes_in_place() -> None:
    week = ORDERS.replace(
        "steps:", "queues:\n  partitioned: {interval: 1 day, retention: 7d}\nsteps:"
    )
    two_weeks = week.replace("retention: 7d", "retention: 14d")
    hourly = week.replace("interval: 1 day", "interval: 1h")
    catalog = applied_catalog(state(week))

    in_place = diff(state(two_weeks), catalog)
    assert heads(in_place)[0] == "~ queue orders__receive: partitions: keep 7d -> keep 14d"
    assert in_place.changes[0].statements == (
        "UPDATE pgmq_ext.partition_config\n"
        "   SET retention_interval = '14 days',\n"
        "       time_retention = '14 days'::interval\n"
        " WHERE queue_name = 'orders__receive';",
    )

    converted = diff(state(hourly), catalog)
    first = converted.changes[0]
    assert first.at_risk == "orders__receive" and not first.drift
    assert (
        first.summary == "convert: partitioned by 1d -> partitioned by 1h (drop and create again)"
    )
    assert first.statements[0] == "SELECT pgmq.drop_queue('orders__receive');"


def test_damaged_queue_is_recreated_as_drift() -> None:
    desired = state(ORDERS)
    catalog = applied_catalog(desired)
    damaged = replace(catalog.queues["orders__ship"], has_archive=False)
    result = diff(desired, replace(catalog, queues={**catalog.queues, "orders__ship": damaged}))
    (change,) = result.changes
    assert change.drift and change.at_risk == "orders__ship"
    assert change.summary.startswith("drop and create again: its tables are damaged")


def test_join_state_of_a_step_that_is_no_longer_a_join() -> None:
    desired = state(ORDERS.replace("after: [ship, bill]", "after: [ship]"))
    catalog = applied_catalog(state(ORDERS), joins={("orders", "close"): JoinCount(0, 4)})
    (joins,) = [c for c in diff(desired, catalog).changes if c.kind == "joins"]
    assert joins.describe() == [
        "- join state orders.close: delete 4 rows: step close is no longer a join"
    ]
    assert joins.statements == (
        "DELETE FROM orchestrator.joins WHERE pipeline = 'orders' AND step = 'close';",
    )
    assert not joins.destructive


def test_storage_the_queue_layer_refuses() -> None:
    with pytest.raises(ConfigError, match=r"partition interval \(30s\) must be at least 1m"):
        state(ORDERS.replace("steps:", "queues:\n  partitioned: {interval: 30s}\nsteps:"))
    with pytest.raises(ConfigError, match=r"throttle \(30d\) must be at most"):
        state(ORDERS.replace("steps:", "queues:\n  notify: {throttle: 30d}\nsteps:"))


def test_run_id_indexes_per_queue_kind() -> None:
    desired = state(ORDERS)
    assert desired.queues["orders__ship"].run_id_tables == ("a",)
    assert desired.queues["orders_dlq"].run_id_tables == ("q", "a")


def test_group_by_adds_and_removes_the_fifo_index() -> None:
    grouped = ORDERS.replace(
        "ship: {handler: app.orders:ship}", "ship: {handler: app.orders:ship, group_by: customer}"
    )
    assert state(grouped).queues["orders__ship"].group_by == "customer"
    assert diff(state(grouped), applied_catalog(state(grouped))).empty
    added = diff(state(grouped), applied_catalog(state(ORDERS)))
    assert heads(added)[0] == "+ queue orders__ship: FIFO group index for group_by customer"
    removed = diff(state(ORDERS), applied_catalog(state(grouped)))
    assert heads(removed)[0] == (
        "- queue orders__ship: drop the FIFO group index (group_by customer removed)"
    )
    assert removed.changes[0].statements == (
        'DROP INDEX IF EXISTS pgmq."q_orders__ship_group_idx";',
    )


def test_spec_changes_in_words() -> None:
    old = parse_pipeline(ORDERS).to_json()
    new = parse_pipeline(
        ORDERS.replace(
            "ship: {handler: app.orders:ship}", "ship: {handler: app.orders:ship, delay: 5m}"
        )
    ).to_json()
    assert spec_changes(old, new) == ["steps.ship.delay: 0s -> 5m"]
    assert spec_changes({"a": 1}, {"b": [1, 2]}) == ["a: removed", "b: added"]
    assert spec_changes({"x": "a"}, {"x": "b" * 100}) == ['x: "a" -> "' + "b" * 76 + "..."]


def test_partitioning_words() -> None:
    assert PartitionLayout("time", 86400.0, None).describe() == "partitioned by 1d, keep forever"
    assert Storage(notify_ms=0).describe() == "notify on every insert"
