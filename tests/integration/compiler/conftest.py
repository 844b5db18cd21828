"""Pipeline files written per test, loaded the way the CLI loads them."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.spec import Pipeline, load_pipelines_or_raise

ORDERS = """
pipeline: orders
queues:
  notify: {throttle: 250ms}
  archive: {retention: 30 days}
steps:
  receive: {handler: app.orders:receive, next: [check]}
  check: {handler: app.orders:check, next: [ship, bill]}
  ship: {handler: app.orders:ship}
  bill: {handler: app.orders:bill}
  close: {handler: app.orders:close, after: [ship, bill]}
"""
"""Five steps with a fan-out and a join: queues orders__receive .. orders__close, orders_dlq."""

ORDERS_QUEUES = {
    "orders__receive",
    "orders__check",
    "orders__ship",
    "orders__bill",
    "orders__close",
    "orders_dlq",
}

Write = Callable[..., list[Pipeline]]


@pytest.fixture
def pipelines_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    return folder


@pytest.fixture
def write(pipelines_dir: Path) -> Write:
    """write(orders=YAML, ...) replaces the folder's files (one per keyword) and loads them."""

    def _write(**files: str) -> list[Pipeline]:
        for old in pipelines_dir.glob("*.yaml"):
            old.unlink()
        for name, text in files.items():
            (pipelines_dir / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
        return load_pipelines_or_raise(pipelines_dir)

    return _write
