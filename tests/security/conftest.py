"""Fixtures of the security tests: the injection corpus, a canary table, a shared database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.badinput.conftest import shared  # noqa: F401  (re-exported fixture)

# Names that must never become SQL. Each targets the table `canary`: if any of them ran as
# SQL, the table (or its rows) would be gone.
CORPUS = {
    "quote": "orders'; DROP TABLE canary; --",
    "double_quote": 'orders"; DROP TABLE canary; --',
    "semicolon": "orders; DROP TABLE canary",
    "line_comment": "orders -- DELETE FROM canary",
    "dashes": "orders--",
    "block_comment": "orders/**/",
    "close_comment": "orders*/; DROP TABLE canary; /*",
    "dollar_quote": "orders$$; DROP TABLE canary; $$",
    "parameter": "$1",
    "format_directive": "%I%s%L",
    "template": "{{ 7 * 7 }}{% raw %}",
    "backslash": "orders\\",
    "newline": "orders\nDROP TABLE canary",
    "nul": "orders\x00; DROP TABLE canary",
    "greek_question_mark": "orders\u037e DROP TABLE canary",
    "right_single_quote": "orders\u2019; DROP TABLE canary; --",
    "fullwidth_quote": "orders\uff07; DROP TABLE canary; --",
    "cyrillic_o": "\u043erders",
    "fullwidth_letters": "\uff4f\uff52\uff44\uff45\uff52\uff53",
    "zero_width_space": "orders\u200b",
    "space": "orders x",
    "too_long_48": "o" * 48,
    "too_long_64": "o" * 64,
    "too_long_2k": "o" * 2_000,
    "empty": "",
}

CANARY = "CREATE TABLE canary (x int); INSERT INTO canary SELECT generate_series(1, 3)"


def add_canary(dsn: str) -> None:
    async def create() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(CANARY)
        finally:
            await conn.close()

    asyncio.run(create())


@pytest.fixture(scope="module")
def target(shared: tuple[str, Path]) -> Iterator[tuple[str, Path]]:  # noqa: F811
    """The module's applied database, with a canary table."""
    add_canary(shared[0])
    yield shared
