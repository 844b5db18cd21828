"""Mixed poison: a sustained load where a share of the runs is poison of every kind, while
workers are SIGKILLed and their backends terminated every few seconds and PostgreSQL restarts
once.

Poison kinds, each dead-lettered with its own error type and nothing else: a handler that ends
its process (``os._exit``: WorkerLost), a body Python cannot decode, started from SQL
(UndecodableMessage), an impossible retry delay (InvalidRetryDelay) and an output over the
payload limit (InvalidOutput). Every good run carries a 21-digit integer and a long decimal,
which must reach the last step digit for digit. The checks: every good run's effects exactly
once, every poison run dead-lettered exactly once with its type, no batch-mate dead-lettered,
nothing left in the step queues.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orchestrator.db import embedded
from tests.faults.conftest import Scenario, sizes
from tests.faults.harness import (
    DEAD_LETTER_QUEUE,
    PIPELINE,
    STEPS,
    Figures,
    Fleet,
    Shape,
    Size,
    plans,
    send_over,
    verify,
)
from tests.faults.test_backend_kill import TERMINATE
from tests.faults.test_postgres_restart import session_pgdata, start_server

SHAPE = Shape(visibility_timeout="2s", timeout="1500ms", batch_size=8, max_attempts=3)
KINDS = {
    "exit": "WorkerLost",
    "retry_far": "InvalidRetryDelay",
    "bad_output": "InvalidOutput",
}
BIG = 123456789012345678901
AMOUNT = Decimal("1234567890.123456789")
DEEP = "[" * 1025 + "]" * 1025


def mixed(count: int, share: float, s: Scenario) -> list[dict[str, Any]]:
    """Good runs carrying long numbers, and `share` of them poison of each kind at a step."""
    payloads = plans(count, s.rng, flaky=0.05, max_flaky=1)
    for payload in payloads:
        payload["id"] = BIG
        payload["amount"] = AMOUNT
    per_kind = max(1, round(count * share))
    chosen = s.rng.sample(range(count), per_kind * len(KINDS))
    for index, n in enumerate(chosen):
        kind = list(KINDS)[index % len(KINDS)]
        payloads[n]["plan"] = {s.rng.choice(STEPS): {"poison": kind}}
    return payloads


async def send_undecodable(s: Scenario, count: int) -> None:
    """Bodies jsonb stores and Python cannot decode, as another program would send them."""
    for _ in range(count):
        run_id = str(uuid.uuid4())
        await s.probe.execute(
            "SELECT pgmq.send($1, ('{\"deep\": ' || $2 || '}')::jsonb,"
            " jsonb_build_object('run_id', $3::text))",
            f"{PIPELINE}__{STEPS[0]}",
            DEEP,
            run_id,
        )
        s.runs.dead[run_id] = STEPS[0]


async def inject(
    s: Scenario, fleet: Fleet, size: Size, sending: asyncio.Lock, pgdata: Path | None
) -> dict[str, int]:
    """Every interval: SIGKILL one worker or terminate backends; once, halfway, restart
    PostgreSQL (when the session runs the embedded server)."""
    counts = {"killed": 0, "backends terminated": 0, "postgres restarts": 0}
    for round_ in range(size.faults):
        await asyncio.sleep(size.interval * s.rng.uniform(0.5, 1.5))
        if pgdata is not None and round_ == size.faults // 2:
            async with sending:
                await asyncio.to_thread(embedded.stop, pgdata)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(start_server, pgdata)
            counts["postgres restarts"] += 1
        elif round_ % 2 == 0:
            victim = s.rng.randrange(fleet.count)
            fleet.kill(victim)
            fleet.start(victim)
            counts["killed"] += 1
        else:
            counts["backends terminated"] += int(await s.probe.fetchval(TERMINATE))
    return counts


async def restart_ended(fleet: Fleet, ended: dict[str, int]) -> None:
    """Restart a worker a poison message ended, as a service manager does (systemd's
    ``Restart=always`` waits 100 ms), until cancelled."""
    while True:
        for index in range(fleet.count):
            if fleet.processes[index].poll() is not None:
                fleet.start(index)
                ended["restarted"] += 1
        await asyncio.sleep(0.2)


async def settle(s: Scenario, size: Size, started: float) -> None:
    """Wait for the runs to settle, saying every 30 s how far they got."""
    deadline = time.monotonic() + size.settle
    said = time.monotonic()
    while time.monotonic() < deadline and not await _settled(s):
        if time.monotonic() - said >= 30:
            said = time.monotonic()
            print(
                f"mixed poison [{size.name}] at {said - started:.0f}s: completed"
                f" {await s.probe.completed()} of {len(s.runs.ok)}, dead letters"
                f" {await s.probe.dead_letters()} of {len(s.runs.dead)}, waiting"
                f" {await s.probe.waiting()}",
                flush=True,
            )
        await asyncio.sleep(0.5)


async def _settled(s: Scenario) -> bool:
    """Nothing waits and every run ended, one way or the other (`verify` says if rightly)."""
    return (
        await s.probe.waiting() == 0
        and await s.probe.dead_letters() + await s.probe.completed()
        >= len(s.runs.dead) + len(s.runs.ok)
    )


@pytest.mark.shape(SHAPE)
@pytest.mark.parametrize(
    "size",
    sizes(
        Size("small", runs=40, workers=2, faults=4, interval=1.0, settle=120),
        Size("large", runs=20000, workers=3, faults=60, interval=3.0, settle=900),
    ),
)
async def test_poison_of_every_kind_is_dead_lettered_alone_under_faults(
    scenario: Scenario, size: Size, pg_server: dict[str, object]
) -> None:
    s = scenario
    pgdata = session_pgdata(pg_server) if pg_server["kind"] == "embedded" else None
    share = 0.01 if size.name == "large" else 0.025
    payloads = mixed(size.runs, share, s)
    figures = Figures("mixed poison", size.name)
    fleet = Fleet(s.root, s.dsn, size.workers)
    sending = asyncio.Lock()
    started = time.monotonic()
    ended = {"restarted": 0}
    fleet.start()
    restarting = asyncio.create_task(restart_ended(fleet, ended))
    try:
        producing = asyncio.create_task(
            send_over(s.dsn, payloads, s.runs, size.interval * size.faults, 10, sending)
        )
        await send_undecodable(s, max(1, round(size.runs * share)))
        figures.faults = await inject(s, fleet, size, sending, pgdata)
        await producing
        await settle(s, size, started)
        restarting.cancel()
        fleet.stop()
    finally:
        restarting.cancel()
        fleet.cleanup()
    figures.faults |= ended
    figures.seconds = time.monotonic() - started
    await verify(s.probe, s.runs, figures)
    kinds = await s.probe.fetch(
        f"SELECT message->>'run_id' AS run_id, message->'error'->>'type' AS type"
        f" FROM pgmq.q_{DEAD_LETTER_QUEUE}"
    )
    expected = {
        run: KINDS.get(s.runs.plans[run]["plan"][step]["poison"]) if run in s.runs.plans else None
        for run, step in s.runs.dead.items()
    }
    got = {r["run_id"]: r["type"] for r in kinds}
    assert len(kinds) == len(got), "a run dead-lettered twice"
    assert got == {run: kind or "UndecodableMessage" for run, kind in expected.items()}
    digits = await s.probe.fetchval(
        f"SELECT count(*) FROM pgmq.a_{PIPELINE}__{STEPS[-1]}"
        " WHERE message::text LIKE '%123456789012345678901%'"
        " AND message::text LIKE '%1234567890.123456789%'"
    )
    assert digits == len(s.runs.ok)
    figures.extra = {"poison": len(s.runs.dead)}
