"""Browser tests: the dashboard served by uvicorn on loopback, driven by the Chromium that
Debian's `chromium` and `chromium-driver` packages install (never a downloaded browser).

Without those packages every test here is skipped, and the run says so loudly at its end.
Screenshots go to `$ORCHESTRATOR_SCREENSHOTS` when set (`docs/img` refreshes the README's).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from orchestrator.ui.security import Guard
from orchestrator.ui.web import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = None if CHROMIUM and CHROMEDRIVER else "chromium and chromium-driver are not installed"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)

_skipped: list[str] = []


def pytest_collection_modifyitems(config: Any, items: list[pytest.Item]) -> None:
    if MISSING is None:
        return
    for item in items:
        if "tests/browser" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.skip(reason=f"browser tests SKIPPED: {MISSING}"))
            _skipped.append(item.nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped:
        line = "!" * 78
        terminalreporter.write_line(line, red=True, bold=True)
        terminalreporter.write_line(
            f"BROWSER TESTS SKIPPED ({len(_skipped)}): {MISSING}; "
            "install them with: apt-get install -y chromium chromium-driver",
            red=True,
            bold=True,
        )
        terminalreporter.write_line(line, red=True, bold=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER
    profile = tempfile.mkdtemp(prefix="orchestrator-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Served:
    """The dashboard served by uvicorn in a thread of this process."""

    def __init__(self, dsn: str, guard: Guard) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(dsn, guard=guard),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the dashboard did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
async def served(dsn: str) -> AsyncIterator[Served]:
    """The dashboard on loopback without a token: actions allowed."""
    with Served(dsn, Guard(loopback=True)) as found:
        yield found


def screenshot(driver: Any, name: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / f"{name}.png"))
