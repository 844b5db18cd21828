"""What a step's FlowGate makes of the notifications of the flow channel, without a database."""

from __future__ import annotations

from orchestrator.runtime import flow
from orchestrator.runtime.flow import CHECK_INTERVAL, QUIET_POLL, FlowGate
from orchestrator.runtime.wakeup import WakeupListener
from orchestrator.spec import parse_pipeline

SHOP = """
pipeline: shop
steps:
  order: {handler: app:order, next: [sap]}
  sap: {handler: app:sap, max_in_flight: 2}
"""


def gate(step: str) -> FlowGate:
    pipeline = parse_pipeline(SHOP)
    return FlowGate(pipeline, pipeline.step(step), 30.0)


def test_only_its_own_payloads_or_an_empty_one_wake_a_gate() -> None:
    g = gate("sap")
    g._paused_checked = 1e12  # as if looked up just now
    g.wake("other.sap")
    assert not g._bell.is_set() and g._paused_checked == 1e12
    g.wake("shop.sap")  # a freed slot, a pause or a resume of this step
    assert g._bell.is_set() and g._paused_checked < 0
    g._bell.clear()
    g._paused_checked = 1e12
    g.wake("")  # a listener that reconnected: anything may have been missed
    assert g._bell.is_set() and g._paused_checked < 0


def test_waits_are_long_only_when_notifications_come() -> None:
    g = gate("sap")
    assert g._quiet_poll == CHECK_INTERVAL
    g.notified = True
    assert g._quiet_poll == QUIET_POLL


def test_a_reconnected_listener_calls_every_callback_with_an_empty_payload() -> None:
    heard: list[str] = []
    listener = WakeupListener("postgresql://unused", [])
    listener.also_listen(flow.FLOW_CHANNEL, heard.append)
    listener.wake_all()
    assert heard == [""]
