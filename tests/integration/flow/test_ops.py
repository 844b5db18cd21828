"""`status` and `trace` show flow control: paused steps, limits at work, cancelled runs."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator import cancel, pause, start
from orchestrator.db import connect
from tests.integration.flow.support import flow_project, prepare

SHOP = """\
pipeline: shop
dedupe_window: 10m
steps:
  receive:
    handler: handlers.timed:timed
    next: [sap_sync]
  sap_sync:
    handler: handlers.timed:timed
    rate_limit: {name: sap, rate: 20/s}
    max_in_flight: 8
    group_by: customer_id
    max_waiting: 5000
"""


async def test_status_shows_pauses_limits_and_cancelled_runs(tmp_path: Path, dsn: str) -> None:
    project = flow_project(tmp_path, {"shop": SHOP})
    await prepare(dsn, project)
    conn = await connect(dsn)
    try:
        await pause("shop.sap_sync", conn=conn)
        run = await start("shop", {"customer_id": 7}, conn=conn)
        await cancel(run, conn=conn, by="night shift")
        await conn.execute("SELECT orchestrator.take_tokens('sap', 20, 20, 1)")
    finally:
        await conn.close()
    text = project.cli("status", "--dsn", dsn)
    assert text.returncode == 0, text.stderr
    [line] = [x for x in text.stdout.splitlines() if "flow sap_sync" in x]
    assert "PAUSED since" in line
    assert "rate 20/s (bucket sap, " in line and "tokens)" in line
    assert "in flight 0/8" in line and "one at a time per customer_id" in line
    assert "above 5000 visible" in line
    assert "  cancelled runs: 1" in text.stdout
    data = json.loads(project.cli("status", "--dsn", dsn, "--json").stdout)
    [shop] = data["pipelines"]
    assert shop["cancelled_runs"] == 1
    assert shop["flow"]["sap_sync"]["max_in_flight"] == 8
    assert shop["flow"]["sap_sync"]["paused_since"] is not None
    assert "receive" not in shop["flow"]

    traced = project.cli("trace", "--dsn", dsn, str(run))
    assert traced.returncode == 0, traced.stderr
    head, cancelled = traced.stdout.splitlines()[:2]
    assert f"run {run}  cancelled" in head
    assert "cancelled" in cancelled and "by night shift (1 waiting message(s) removed)" in cancelled
