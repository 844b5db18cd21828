"""Cost of step contracts per message, on the demo's payloads (no database).

Each row times the checks the runtime makes for one message of a demo step, sent by a worker of
the same version (the compiled validators of `orchestrator.runtime.contracts`: the input before
the handler unless the sender checked it already, the output after it) against encoding the
same payloads with orjson, which the hand-off does anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.common import Row
from orchestrator.runtime.contracts import StepContracts
from orchestrator.spec import load_pipelines_or_raise

SECTION = "contracts"
DEMO = Path(__file__).resolve().parents[1] / "pipelines" / "work_orders.yaml"

ROW = {
    "row": {
        "work_order_no": "WO-100042",
        "material": "MAT-10042",
        "description": "Hydraulic pump housing",
        "quantity": "12",
        "unit": "PC",
        "plant": "1000",
        "due_date": "2026-01-19",
        "planner_email": "planner.hamburg@example.com",
    },
    "source": "work_orders.csv",
    "line": 42,
}
ORDER = {"work_order_no": "WO-100042", "change": "inserted"}
BARCODE = {**ORDER, "barcode": "code128"}
SAP = {"work_order_no": "WO-100042", "sap_order": "4500012345", "posted": True}
MAIL = {"work_order_no": "WO-100042", "message_id": "<a1b2@example.com>", "sent": True}

# step -> (payload it takes, output it returns)
MESSAGES = {
    "import": (ROW, ORDER),
    "barcode": (ORDER, BARCODE),
    "sap_sync": (BARCODE, SAP),
    "report": ({"sap_sync": SAP, "email": MAIL}, {"work_order_no": "WO-100042"}),
}


def _per_call(function: Callable[[], Any], rounds: int) -> float:
    """Microseconds per call, best of 5 timings of `rounds` calls."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            function()
        best = min(best, time.perf_counter() - started)
    return best / rounds * 1e6


def rows(quick: bool) -> list[Row]:
    """One row per demo step: input + output checks of one message, in microseconds."""
    (pipeline,) = [p for p in load_pipelines_or_raise(DEMO) if p.name == "work_orders"]
    rounds = 2000 if quick else 20000
    same_version = {"spec_hash": pipeline.spec_hash()}  # sent by a worker of this version
    result = []
    for step, (payload, output) in MESSAGES.items():
        contracts = StepContracts.of(pipeline, step)

        def check(c: StepContracts = contracts, p: Any = payload, o: Any = output) -> None:
            c.payload(p, same_version)
            c.output(o)

        def encode(p: Any = payload, o: Any = output) -> None:
            orjson.dumps(p)
            orjson.dumps(o)

        result.append(
            Row(
                SECTION,
                f"check input + output, demo step {step}",
                0,
                _per_call(check, rounds),
                _per_call(encode, rounds),
                "µs/msg",
                "orjson.dumps of the same payloads",
                "validators compiled once per process",
                higher_is_better=False,
            )
        )
    return result
