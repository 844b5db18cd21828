"""Every page of the dashboard over real data, and bad input answered with one line."""

from __future__ import annotations

import asyncpg
import httpx

from orchestrator.spec import Pipeline
from tests.integration.ops import support

HOSTILE = "<script>alert('x')</script> \"quoted\" 'single' \x01\x7f"


async def test_overview_draws_every_step_with_its_numbers(
    client: httpx.AsyncClient, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    run = support.new_run()
    await support.send(conn, orders, "fetch", run)
    await support.send(conn, orders, "fetch", support.new_run())
    await support.dead_letter(conn, orders, "sync", run)
    page = await client.get("/")
    assert page.status_code == 200
    html = page.text
    for step in ("fetch", "label", "sync", "report"):
        assert f'data-step="{step}"' in html
    assert html.count('class="edge"') == 4  # fan-out to label and sync, join into report
    fetch_box = html.split('data-step="fetch"')[1].split("</g>")[0]
    assert 'class="waiting" font-weight="600">2<' in fetch_box
    assert 'class="dead-letter-count">1<' in html
    assert 'sse-connect="/events/overview"' in html


async def test_overview_says_what_a_pipeline_subscribes_to_and_publishes(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    topics = support.ORDERS.replace(
        "  sync:\n    handler: shop.steps:sync\n",
        "  sync:\n    handler: shop.steps:sync\n    publish: [orders.synced, sap.done]\n",
    ).replace("steps:\n", "subscribe: [shop.#, returns.*]\nsteps:\n", 1)
    assert "publish:" in topics and "subscribe:" in topics
    await support.provision(conn, support.pipeline(topics))
    html = (await client.get("/")).text
    line = html.split('<p class="muted topics">')[1].split("</p>")[0]
    assert "subscribes to <code>shop.#</code>, <code>returns.*</code>" in line
    assert (
        '<span class="publishes" data-step="sync"><a href="/pipelines/orders/steps/sync">sync</a>'
        " publishes <code>orders.synced</code>, <code>sap.done</code></span>"
    ) in line


async def test_overview_without_topics_has_no_topics_line(
    client: httpx.AsyncClient, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    assert 'class="muted topics"' not in (await client.get("/")).text


LIMITED = support.ORDERS.replace(
    "  sync:\n    handler: shop.steps:sync\n",
    "  sync:\n    handler: shop.steps:sync\n    rate_limit: 1/h\n",
).replace(
    "  report:\n    handler: shop.steps:report\n",
    "  report:\n    handler: shop.steps:report\n    max_in_flight: 1\n",
)


async def test_overview_shows_paused_and_rate_limited_steps(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    from orchestrator.runtime.control import pause

    assert "rate_limit: 1/h" in LIMITED and "max_in_flight: 1" in LIMITED
    await support.provision(conn, support.pipeline(LIMITED))

    def box(html: str, step: str) -> str:
        return html.split(f'data-step="{step}"')[1].split("</g>")[0]

    calm = (await client.get("/")).text
    assert "flow-state" not in calm
    assert ">≤ 1/h<" in box(calm, "sync")

    await pause("orders.label", conn=conn)
    # A fresh bucket holds one token: taking it leaves the bucket empty for an hour at 1/h.
    await conn.execute("SELECT orchestrator.take_tokens('orders.sync', 1 / 3600.0, 1, 1)")
    await conn.execute(
        "SELECT orchestrator.take_slots('orders.report', 1, 1, gen_random_uuid(), 600)"
    )
    held = (await client.get("/")).text
    assert 'class="flow-state paused"' in box(held, "label")
    assert ">paused<" in box(held, "label")
    assert ">rate-limited<" in box(held, "sync")
    assert ">at max in flight<" in box(held, "report")
    assert "flow-state" not in box(held, "fetch") and " held" not in box(held, "fetch")


async def test_step_page_shows_hour_errors_and_oldest(
    client: httpx.AsyncClient, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    run = support.new_run()
    await support.complete_run(conn, orders, run)
    waiting = await support.send(conn, orders, "sync", support.new_run())
    await support.read(conn, "orders__sync")
    await support.fail(conn, "orders__sync", waiting, 1)
    await support.dead_letter(conn, orders, "sync", run, error_type="SapDown")
    page = await client.get("/pipelines/orders/steps/sync")
    assert page.status_code == 200
    assert 'class="bar"' in page.text
    errors = page.text.split('id="errors"')[1].split("</table>")[0]
    assert "SapDown" in errors and "RuntimeError" in errors


async def test_runs_are_paged_by_keyset_and_filtered(
    client: httpx.AsyncClient, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    done = [support.new_run() for _ in range(30)]
    for i, run in enumerate(done):
        await support.send(conn, orders, "fetch", run, {"customer_id": 1000 + i, "run": run})
        await support.read(conn, "orders__fetch")
        await support.archive(conn, "orders__fetch", i + 1)
    failed = support.new_run()
    await support.send(conn, orders, "fetch", failed, {"customer_id": 42, "run": failed})
    await support.read(conn, "orders__fetch")
    await support.archive(conn, "orders__fetch", 31)
    await support.dead_letter(conn, orders, "sync", failed)
    running = support.new_run()
    await support.send(conn, orders, "fetch", running, {"customer_id": 7, "run": running})

    first = await client.get("/runs", params={"pipeline": "orders"})
    assert first.status_code == 200
    assert first.text.count('class="run"') == 25
    assert first.text.index(running) < first.text.index(failed)
    assert "state-running" in first.text and "state-dead-lettered" in first.text
    following = first.text.split('id="next" href="')[1].split('"')[0].replace("&amp;", "&")
    second = await client.get(following)
    assert second.text.count('class="run"') == 7
    assert done[0] in second.text and done[0] not in first.text

    dead = await client.get("/runs", params={"pipeline": "orders", "state": "dead-lettered"})
    assert dead.text.count('class="run"') == 1 and failed in dead.text
    found = await client.get("/runs", params={"pipeline": "orders", "field": "customer_id = 7"})
    assert found.text.count('class="run"') == 1 and running in found.text
    none = await client.get("/runs", params={"pipeline": "orders", "field": 'customer_id = "7"'})
    assert none.text.count('class="run"') == 0

    by_id = await client.get("/runs", params={"run": failed.replace("-", "")})
    assert by_id.status_code == 303 and by_id.headers["location"] == f"/runs/{failed}"


async def test_run_page_shows_timeline_and_escaped_payloads(
    client: httpx.AsyncClient, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    run = support.new_run()
    await support.send(conn, orders, "fetch", run, {"note": HOSTILE, "run": run})
    page = await client.get(f"/runs/{run}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(" in page.text
    assert 'class="wait"' in page.text


async def test_dead_letter_page_escapes_everything(
    client: httpx.AsyncClient, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    run = support.new_run()
    dead = await support.dead_letter(
        conn, orders, "sync", run, {"x": HOSTILE}, error_type="Bad<script>", message=HOSTILE
    )
    listing = await client.get("/dead-letters", params={"pipeline": "orders"})
    shown = await client.get(f"/dead-letters/orders/{dead}")
    for page in (listing, shown):
        assert page.status_code == 200
        assert "<script>" not in page.text.split("</head>")[1]
        assert "&lt;script&gt;" in page.text
    assert "Traceback (most recent call last)" in shown.text
    assert "traceparent" in shown.text  # the original headers


async def test_workers_page_lists_live_heartbeats(
    client: httpx.AsyncClient, pool: asyncpg.Pool, conn: asyncpg.Connection
) -> None:
    await conn.execute(
        "INSERT INTO orchestrator.workers (id, host, pid, steps, heartbeat_at) VALUES"
        " (gen_random_uuid(), 'alive-host', 101, '{orders__fetch}', now()),"
        " (gen_random_uuid(), 'dead-host', 102, '{orders__sync}', now() - interval '2 minutes')"
    )
    page = await client.get("/workers")
    assert page.status_code == 200
    assert "alive-host" in page.text and "orders__fetch" in page.text
    assert "dead-host" not in page.text


async def test_bad_input_is_one_line_and_no_traceback(
    client: httpx.AsyncClient, orders: Pipeline
) -> None:
    cases = {
        "/runs?pipeline=nope": 404,
        "/runs/not-a-uuid": 400,
        "/runs?pipeline=orders&before=12abc": 400,
        "/runs?pipeline=orders&state=exploded": 400,
        "/runs?pipeline=orders&field=%3Cscript%3E": 400,
        "/pipelines/orders/steps/nope": 404,
        "/dead-letters?pipeline=orders&step=nope": 404,
        "/dead-letters/orders/999": 404,
        "/dead-letters/orders/-1": 400,
    }
    for path, status in cases.items():
        page = await client.get(path)
        assert page.status_code == status, path
        assert 'id="error"' in page.text, path
        assert "Traceback" not in page.text and "<script>" not in page.text.split("</head>")[1]


async def test_a_database_without_pipelines_says_what_to_run(empty_dsn: str) -> None:
    from orchestrator.ui.security import Guard
    from tests.integration.ui.conftest import client_for

    async for client in client_for(empty_dsn, Guard(loopback=True)):
        page = await client.get("/")
        assert page.status_code == 503
        assert "orchestrator apply" in page.text


async def test_run_page_of_a_run_a_topic_started_links_the_publishing_run(
    client: httpx.AsyncClient, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    run, publisher = support.new_run(), support.new_run()
    origin = {"topic": "shop.<b>", "pipeline": "shop", "step": "sell", "run_id": publisher}
    await conn.execute(
        "SELECT pgmq.send($1, $2::jsonb, $3::jsonb)",
        orders.queue_name("fetch"),
        {"run": run},
        {**support.headers(run, orders, "fetch"), "published": {**origin, "msg_id": 7}},
    )
    page = await client.get(f"/runs/{run}")
    assert page.status_code == 200
    assert (
        "Started by topic <code>shop.&lt;b&gt;</code>, published by shop.sell in run "
        f'<a href="/runs/{publisher}"><code>{publisher}</code></a>'
    ) in page.text
