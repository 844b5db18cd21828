"""`python -m bench.ui_bench [--archived N]`: every dashboard page at a large archive.

Builds a scratch database (`orchestrator_bench_ui`) with the `orders` pipeline of the
operations' tests applied the way `apply` does (queues, archives, the run-id indexes), fills
its archives with N archived messages in all (N/4 runs through four steps, spread over 30 days,
the entry step's payload carrying `customer_id`), a few hundred waiting and retrying messages
and dead letters, then times each page through the ASGI application (`httpx` in process, so
the figure is the dashboard's own work: queries and rendering, no network) and prints the
median and worst of `REPEAT` requests per page. The pages' queries are the ones
tests/integration/ui/test_plans.py EXPLAINs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import asyncpg
import httpx

from bench.common import median, recreate_database

DATABASE = "orchestrator_bench_ui"
REPEAT = 7
STEPS = ("fetch", "label", "sync", "report")


async def fill_archives(
    conn: asyncpg.Connection, runs: int, *, days: float = 30.0, steps: tuple[str, ...] = STEPS
) -> None:
    """`runs` finished runs of pipeline `orders` in the archives of `steps` (msg_ids 1..runs,
    the same run id at each step), archived evenly over the last `days` days, newest last."""
    spacing = days * 86400.0 / max(runs, 1)
    for step in steps:
        await conn.execute(
            f"""
            INSERT INTO pgmq.a_orders__{step}
                   (msg_id, read_ct, enqueued_at, last_read_at, archived_at, vt, message, headers)
            SELECT i, 1, t - interval '40 ms', t - interval '30 ms', t, t,
                   jsonb_build_object('customer_id', i % 50000, 'order', i),
                   jsonb_build_object('run_id', md5(i::text)::uuid::text, 'pipeline', 'orders',
                                      'step', '{step}', 'sent_at', t - interval '40 ms')
              FROM generate_series(1, $1::bigint) AS i,
                   LATERAL (SELECT now() - make_interval(secs => ($1 - i) * $2)) AS at (t)
            """,
            runs,
            spacing,
        )
        await conn.execute(f"SELECT setval('pgmq.q_orders__{step}_msg_id_seq', $1::bigint)", runs)
        await conn.execute(f"ANALYZE pgmq.a_orders__{step}")


async def _prepare(dsn: str, runs: int, log: object) -> None:
    from orchestrator.db import connect
    from orchestrator.queue.install import install
    from orchestrator.store import install as install_store
    from tests.integration.ops import support

    conn = await connect(dsn)
    try:
        await install(conn)
        await install_store(conn)
        model = await support.provision(conn, support.pipeline(support.ORDERS))
        started = time.perf_counter()
        await fill_archives(conn, runs)
        print(
            f"filled {runs * 4} archived messages in {time.perf_counter() - started:.0f}s",
            file=sys.stderr,
            flush=True,
        )
        for i in range(200):
            await support.send(conn, model, "fetch", support.new_run(), {"customer_id": i})
        for i in range(300):
            await support.dead_letter(conn, model, STEPS[i % 4], support.new_run())
    finally:
        await conn.close()


async def _refresh_functions(dsn: str) -> None:
    from orchestrator.db import connect
    from orchestrator.store import install as install_store

    conn = await connect(dsn)
    try:
        await install_store(conn)
    finally:
        await conn.close()


async def _time_pages(dsn: str) -> list[tuple[str, float, float]]:
    from orchestrator.ui.security import Guard
    from orchestrator.ui.web import create_app

    app = create_app(dsn, guard=Guard(loopback=True))
    transport = httpx.ASGITransport(app=app)
    run_id = "c4ca4238-a0b9-2382-0dcc-509a6f75849b"  # md5('1')::uuid: the oldest run
    pages = {
        "overview": "/",
        "step (last hour)": "/pipelines/orders/steps/sync",
        "runs, first page": "/runs?pipeline=orders",
        "runs, deep page": "/runs?pipeline=orders&before=1000",
        "runs, state=dead-lettered": "/runs?pipeline=orders&state=dead-lettered",
        "runs, customer_id = 4242": "/runs?pipeline=orders&field=customer_id+%3D+4242",
        "run timeline": f"/runs/{run_id}",
        "dead letters": "/dead-letters?pipeline=orders",
        "dead letter": "/dead-letters/orders/1",
        "workers": "/workers",
    }
    found = []
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for name, path in pages.items():
            times = []
            for _ in range(REPEAT):
                began = time.perf_counter()
                response = await client.get(path)
                times.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, (path, response.text[:300])
            found.append((name, median(times[1:]), max(times[1:])))
    await app.state.dashboard.close()
    return found


async def _main(runs: int, reuse: bool) -> int:
    from bench.common import with_database
    from orchestrator.db import resolve_dsn

    if reuse:
        dsn = with_database(resolve_dsn(None), DATABASE)
        await _refresh_functions(dsn)
    else:
        dsn = await recreate_database(resolve_dsn(None), DATABASE)
        await _prepare(dsn, runs, None)
    results = await _time_pages(dsn)
    print(f"python -m bench.ui_bench --archived {runs * 4}{' --reuse' if reuse else ''}")
    print(f"{'page':<28} {'median ms':>10} {'worst ms':>10}")
    for name, middle, worst in results:
        print(f"{name:<28} {middle:>10.1f} {worst:>10.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ui_bench", description=__doc__)
    parser.add_argument("--archived", type=int, default=1_000_000, help="archived messages")
    parser.add_argument(
        "--reuse", action="store_true", help="time the pages of the database the last run built"
    )
    args = parser.parse_args(argv)
    return asyncio.run(_main(max(args.archived // 4, 1), args.reuse))


if __name__ == "__main__":
    raise SystemExit(main())
