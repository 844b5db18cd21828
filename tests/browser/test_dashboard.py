"""The dashboard in a real headless Chromium: every page, live counts, a replay through the
form, and an action refused without the token."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from orchestrator.spec import Pipeline
from orchestrator.ui.security import Guard
from tests.browser.conftest import Served, screenshot
from tests.integration.ops import support

HOSTILE = "<script>alert('owned')</script> \"quoted\" 'single'"
WAIT = 30.0
"""Seconds a browser condition may take (generous: the machine may be loaded)."""


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {WAIT:g}s: {what}")


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return Path(os.environ.get("ORCHESTRATOR_SCREENSHOTS") or tmp_path)


@pytest.fixture
async def orders(conn: asyncpg.Connection) -> Pipeline:
    return await support.provision(conn, support.pipeline(support.ORDERS))


async def _history(conn: asyncpg.Connection, model: Pipeline) -> tuple[str, int]:
    """Finished runs, waiting and retrying work, dead letters (one with a hostile payload), a
    paused step and two workers."""
    from orchestrator.runtime.control import pause

    for _ in range(6):
        await support.complete_run(conn, model, support.new_run())
    for i in range(3):
        await support.send(conn, model, "fetch", support.new_run(), {"customer_id": i})
    retrying = await support.send(conn, model, "sync", support.new_run())
    await support.read(conn, "orders__sync")
    await support.fail(conn, "orders__sync", retrying, 1)
    run = support.new_run()
    await support.send(conn, model, "fetch", run, {"customer_id": 42, "note": HOSTILE})
    await support.dead_letter(conn, model, "label", support.new_run(), error_type="LabelError")
    dead = await support.dead_letter(
        conn, model, "sync", run, {"note": HOSTILE}, error_type="SapTimeout", message=HOSTILE
    )
    await pause("orders.report", conn=conn)
    await conn.execute(
        "INSERT INTO orchestrator.workers (id, host, pid, steps) VALUES"
        " (gen_random_uuid(), 'worker-1', 4242, '{orders__fetch,orders__label}'),"
        " (gen_random_uuid(), 'worker-2', 4243, '{orders__sync,orders__report}')"
    )
    return run, dead


def _maybe_text(browser: Any, css: str) -> str | None:
    """The element's text or None, read in one script (live updates replace elements at any
    time)."""
    found = browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css
    )
    return None if found is None else str(found)


def _text(browser: Any, css: str) -> str:
    found = _maybe_text(browser, css)
    assert found is not None, f"no element {css}"
    return found


async def test_every_page_loads(
    browser: Any,
    served: Served,
    conn: asyncpg.Connection,
    orders: Pipeline,
    shots: Path,
) -> None:
    run, dead = await _history(conn, orders)
    pages = {
        "overview": ("/", "#pipeline-orders svg"),
        "step": ("/pipelines/orders/steps/sync", "#errors"),
        "runs": ("/runs?pipeline=orders", "#runs"),
        "run": (f"/runs/{run}", "#messages"),
        "dead-letters": ("/dead-letters?pipeline=orders", "#letters"),
        "dead-letter": (f"/dead-letters/orders/{dead}", "#traceback"),
        "workers": ("/workers", "#workers"),
    }
    from selenium.webdriver.common.by import By

    for name, (path, marker) in pages.items():
        browser.get(served.url + path)
        assert browser.find_elements(By.CSS_SELECTOR, marker), f"{name}: no {marker}"
        assert "Cannot show this" not in browser.page_source, name
        screenshot(browser, name, shots)
    browser.get(f"{served.url}/dead-letters/orders/{dead}")
    # Shown as text, never run (an alert would fail every later browser call).
    assert "<script>alert('owned')</script>" in _text(browser, "#payload")
    assert "SapTimeout" in _text(browser, "#error-text")
    browser.get(f"{served.url}/runs?pipeline=orders")
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.run")) == 10
    browser.get(f"{served.url}/workers")
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.worker")) == 2


async def test_counts_move_without_a_reload(
    browser: Any, served: Served, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    browser.get(served.url + "/")
    waiting = '#pipeline-orders [data-step="fetch"] .waiting'
    wait_until(lambda: _maybe_text(browser, waiting) == "0", "the overview shows 0 waiting")
    browser.execute_script("window.__same_page = 'yes';")
    for _ in range(3):
        await support.send(conn, orders, "fetch", support.new_run())
    wait_until(lambda: _maybe_text(browser, waiting) == "3", "3 waiting pushed to the page")
    await support.dead_letter(conn, orders, "sync", support.new_run())
    wait_until(
        lambda: _maybe_text(browser, "#pipeline-orders .dead-letter-count") == "1",
        "the dead-letter count pushed to the page",
    )
    assert browser.execute_script("return window.__same_page") == "yes"  # never reloaded


async def test_a_pause_shows_on_the_overview_without_a_reload(
    browser: Any, served: Served, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    from orchestrator.runtime.control import pause, resume

    state = '#pipeline-orders [data-step="label"] .flow-state'
    box = '#pipeline-orders [data-step="label"]'
    shown = (  # one script: the box is there and carries no state (not read mid-swap)
        "const b = document.querySelector(arguments[0]);"
        " return b ? (b.querySelector('.flow-state') ? 'held' : 'free') : 'missing';"
    )
    browser.get(served.url + "/")
    wait_until(lambda: browser.execute_script(shown, box) == "free", "the label step, not held")
    browser.execute_script("window.__same_page = 'yes';")
    await pause("orders.label", conn=conn)
    wait_until(lambda: _maybe_text(browser, state) == "paused", "the label step shown paused")
    await resume("orders.label", conn=conn)
    wait_until(lambda: browser.execute_script(shown, box) == "free", "the pause gone from label")
    assert browser.execute_script("return window.__same_page") == "yes"  # never reloaded


async def test_replay_a_dead_letter_through_the_form(
    browser: Any, served: Served, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    from selenium.webdriver.common.by import By

    first = await support.dead_letter(conn, orders, "sync", support.new_run())
    await support.dead_letter(conn, orders, "sync", support.new_run())
    browser.get(f"{served.url}/dead-letters?pipeline=orders")
    browser.find_element(By.CSS_SELECTOR, f'input[name="ids"][value="{first}"]').click()
    browser.find_element(By.ID, "replay-selected").click()
    wait_until(lambda: bool(browser.find_elements(By.ID, "question")), "the confirmation")
    assert "1 dead letter(s) of orders" in _text(browser, "#question")
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_orders_dlq") == 2
    browser.find_element(By.ID, "confirm-button").click()
    wait_until(lambda: bool(browser.find_elements(By.ID, "result")), "the result message")
    assert "replayed 1 dead letter(s) of orders" in _text(browser, "#result")
    assert await conn.fetchval("SELECT count(*) FROM pgmq.q_orders_dlq") == 1
    replayed = await conn.fetch("SELECT message FROM pgmq.q_orders__sync")
    assert len(replayed) == 1


async def test_an_action_without_the_token_is_refused(
    browser: Any, dsn: str, conn: asyncpg.Connection, orders: Pipeline
) -> None:
    from selenium.webdriver.common.by import By

    dead = await support.dead_letter(conn, orders, "sync", support.new_run())
    with Served(dsn, Guard(token="browser-token")) as served:
        browser.delete_all_cookies()
        browser.get(f"{served.url}/dead-letters/orders/{dead}")
        browser.find_element(By.ID, "replay-one").click()
        wait_until(lambda: bool(browser.find_elements(By.ID, "error")), "the refusal")
        assert "needs the dashboard token" in _text(browser, "#error")
        assert await conn.fetchval("SELECT count(*) FROM pgmq.q_orders_dlq") == 1
        browser.get(f"{served.url}/sign-in")
        browser.find_element(By.ID, "token").send_keys("browser-token")
        browser.find_element(By.ID, "sign-in").click()
        wait_until(lambda: "/dead-letters" in browser.current_url, "signed in")
        browser.get(f"{served.url}/dead-letters/orders/{dead}")
        browser.find_element(By.ID, "replay-one").click()
        wait_until(lambda: bool(browser.find_elements(By.ID, "confirm-button")), "confirmation")
        browser.find_element(By.ID, "confirm-button").click()
        wait_until(lambda: bool(browser.find_elements(By.ID, "result")), "the result")
        assert await conn.fetchval("SELECT count(*) FROM pgmq.q_orders_dlq") == 0
