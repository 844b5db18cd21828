"""Handler references: import from the working directory and signature checks."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.spec.handlers import HandlerError, inspect_handler, resolve_handler

MODULE = """
import functools

async def good_async(payload, ctx):
    return payload

async def bad_async(payload):
    return payload

def plain(payload):
    return payload

def plain_ctx(payload, ctx=None):
    return payload

def too_many(payload, ctx, extra):
    return payload

class Handler:
    async def __call__(self, payload, ctx):
        return payload

instance = Handler()
not_callable = 42
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    package = tmp_path / "handlers_under_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text(MODULE)
    (package / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield "handlers_under_test"
    for name in [m for m in sys.modules if m.startswith("handlers_under_test")]:
        del sys.modules[name]


def test_resolves_from_the_working_directory(module: str) -> None:
    assert resolve_handler(f"{module}.jobs:plain")("x") == "x"


@pytest.mark.parametrize(
    ("name", "is_async", "takes_context"),
    [
        ("good_async", True, True),
        ("plain", False, False),
        ("plain_ctx", False, True),
        ("instance", True, True),
    ],
)
def test_accepted_signatures(module: str, name: str, is_async: bool, takes_context: bool) -> None:
    info = inspect_handler(f"{module}.jobs:{name}")
    assert (info.is_async, info.takes_context) == (is_async, takes_context)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("jobs:bad_async", "must accept (payload, ctx)"),
        ("jobs:too_many", "must accept (payload) or (payload, ctx)"),
        ("jobs:not_callable", "is not callable"),
        ("jobs:missing", "has no attribute 'missing'"),
        ("broken:f", "cannot import 'handlers_under_test.broken': RuntimeError: boom at import"),
        ("nope:f", "cannot import 'handlers_under_test.nope': ModuleNotFoundError"),
    ],
)
def test_rejected(module: str, ref: str, message: str) -> None:
    with pytest.raises(HandlerError) as info:
        inspect_handler(f"{module}.{ref}")
    assert message in str(info.value)


def test_malformed_reference() -> None:
    with pytest.raises(HandlerError, match="malformed handler"):
        resolve_handler("no_colon")
