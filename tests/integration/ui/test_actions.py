"""Replay and purge through the dashboard's forms: confirmation, result, CSRF, token, read-only.

The actions call `ops.dlq` as `orchestrator dlq` does, so a replayed dead letter is back in its
step's queue and gone from the dead-letter queue, in one transaction.
"""

from __future__ import annotations

import base64

import asyncpg
import httpx

from orchestrator.spec import Pipeline
from orchestrator.ui.security import Guard
from tests.integration.ops import support
from tests.integration.ui.conftest import client_for, csrf_of


async def _depths(conn: asyncpg.Connection) -> tuple[int, int]:
    sync = await conn.fetchval("SELECT count(*) FROM pgmq.q_orders__sync")
    dead = await conn.fetchval("SELECT count(*) FROM pgmq.q_orders_dlq")
    return sync, dead


async def test_replay_selected_asks_then_replays(
    client: httpx.AsyncClient, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    first = await support.dead_letter(conn, orders, "sync", support.new_run())
    second = await support.dead_letter(conn, orders, "sync", support.new_run())
    listing = await client.get("/dead-letters", params={"pipeline": "orders"})
    form = {"csrf": csrf_of(listing.text), "pipeline": "orders", "ids": [str(first)]}
    asked = await client.post("/dead-letters/replay", data={**form, "scope": "selected"})
    assert asked.status_code == 200 and 'id="question"' in asked.text
    assert "<strong>1</strong> dead letter(s)" in asked.text
    assert await _depths(conn) == (0, 2)  # nothing happens before the confirmation
    done = await client.post(
        "/dead-letters/replay", data={**form, "scope": "selected", "confirmed": "yes"}
    )
    assert done.status_code == 303
    result = await client.get(done.headers["location"])
    assert "replayed 1 dead letter(s) of orders" in result.text
    assert await _depths(conn) == (1, 1)
    left = await conn.fetchval("SELECT msg_id FROM pgmq.q_orders_dlq")
    assert left == second


async def test_replay_every_match_and_purge(
    client: httpx.AsyncClient, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    for _ in range(3):
        await support.dead_letter(conn, orders, "sync", support.new_run(), error_type="SapDown")
    await support.dead_letter(conn, orders, "label", support.new_run(), error_type="Other")
    listing = await client.get("/dead-letters", params={"pipeline": "orders"})
    token = csrf_of(listing.text)
    form = {"csrf": token, "pipeline": "orders", "error": "sapdown", "scope": "matching"}
    asked = await client.post("/dead-letters/replay", data=form)
    assert "<strong>3</strong>" in asked.text
    await client.post("/dead-letters/replay", data={**form, "confirmed": "yes"})
    assert await _depths(conn) == (3, 1)
    purge = {"csrf": token, "pipeline": "orders"}
    asked = await client.post("/dead-letters/purge", data=purge)
    assert "<strong>1</strong>" in asked.text and await _depths(conn) == (3, 1)
    done = await client.post("/dead-letters/purge", data={**purge, "confirmed": "yes"})
    assert "purged+1+dead+letter" in done.headers["location"]
    assert await _depths(conn) == (3, 0)


async def test_a_form_without_its_csrf_token_is_refused(
    client: httpx.AsyncClient, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    dead = await support.dead_letter(conn, orders, "sync", support.new_run())
    await client.get("/dead-letters")  # the cookie is set
    form = {"pipeline": "orders", "ids": [str(dead)], "confirmed": "yes"}
    for csrf in (None, "0" * 64):
        data = form if csrf is None else {**form, "csrf": csrf}
        refused = await client.post("/dead-letters/replay", data=data)
        assert refused.status_code == 403 and "CSRF" in refused.text
    assert await _depths(conn) == (0, 1)


async def test_with_a_token_actions_need_it(
    dsn: str, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    dead = await support.dead_letter(conn, orders, "sync", support.new_run())
    guard = Guard(token="s3cret-token", users={"ops": "pa:ss"})
    async for client in client_for(dsn, guard):
        listing = await client.get("/dead-letters")
        assert "sign in to act" in listing.text
        form = {"csrf": csrf_of(listing.text), "pipeline": "orders", "ids": [str(dead)]}
        form["confirmed"] = "yes"
        refused = await client.post("/dead-letters/replay", data=form)
        assert refused.status_code == 403 and "needs the dashboard token" in refused.text
        wrong = await client.post("/sign-in", data={"csrf": form["csrf"], "token": "guess"})
        assert wrong.status_code == 403
        assert await _depths(conn) == (0, 1)
        basic = base64.b64encode(b"ops:pa:ss").decode()
        done = await client.post(
            "/dead-letters/replay", data=form, headers={"Authorization": f"Basic {basic}"}
        )
        assert done.status_code == 303 and await _depths(conn) == (1, 0)


async def test_sign_in_with_the_token_allows_actions(
    dsn: str, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    dead = await support.dead_letter(conn, orders, "sync", support.new_run())
    async for client in client_for(dsn, Guard(token="s3cret-token")):
        csrf = csrf_of((await client.get("/sign-in")).text)
        signed = await client.post("/sign-in", data={"csrf": csrf, "token": "s3cret-token"})
        assert signed.status_code == 303
        form = {"csrf": csrf, "pipeline": "orders", "ids": [str(dead)], "confirmed": "yes"}
        done = await client.post("/dead-letters/replay", data=form)
        assert done.status_code == 303 and await _depths(conn) == (1, 0)


async def test_off_loopback_without_a_token_actions_are_refused(
    dsn: str, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    dead = await support.dead_letter(conn, orders, "sync", support.new_run())
    async for client in client_for(dsn, Guard(loopback=False)):
        listing = await client.get("/dead-letters")
        assert "ORCHESTRATOR_UI_TOKEN" in listing.text
        form = {"csrf": csrf_of(listing.text), "pipeline": "orders", "ids": [str(dead)]}
        refused = await client.post("/dead-letters/replay", data={**form, "confirmed": "yes"})
        assert refused.status_code == 403
    assert await _depths(conn) == (0, 1)


async def test_read_only_has_no_forms_and_refuses_posts(
    dsn: str, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    dead = await support.dead_letter(conn, orders, "sync", support.new_run())
    async for client in client_for(dsn, Guard(read_only=True, loopback=True)):
        listing = await client.get("/dead-letters")
        shown = await client.get(f"/dead-letters/orders/{dead}")
        for page in (listing, shown):
            assert 'method="post"' not in page.text
        cookie = client.cookies.get("orchestrator_csrf")
        assert cookie is not None
        form = {"csrf": cookie, "pipeline": "orders", "ids": [str(dead)], "confirmed": "yes"}
        refused = await client.post("/dead-letters/replay", data=form)
        assert refused.status_code == 403 and "read-only" in refused.text
        refused = await client.post("/dead-letters/purge", data=form)
        assert refused.status_code == 403
    assert await _depths(conn) == (0, 1)
