"""The topic rules of pipeline files (`orchestrator.spec.topics`) agree with the queue layer's.

One corpus of routing keys and patterns, chosen edge cases plus random strings over the
characters that matter, goes through the Python checks and through `pgmq.validate_routing_key`
/ `pgmq.validate_topic_pattern`; the valid patterns are bound and every valid key routed by
`pgmq.test_routing`, against `topics.matches`.
"""

from __future__ import annotations

import random

import asyncpg
import pytest

from orchestrator.spec.topics import matches, routing_key_problem, topic_pattern_problem

EDGES = [
    "",
    "a",
    "orders.created",
    "Orders-EU_2.x",
    ".a",
    "a.",
    "a..b",
    ".",
    "a b",
    "a/b",
    "é",
    "\u0661",  # an Arabic-Indic digit: a digit to Unicode, not to the rules
    "\u212a",  # the Kelvin sign, which folds to 'k'
    "a\n",
    "*",
    "#",
    "a.*",
    "*.a",
    "a.#",
    "#.a",
    "a.#.b",
    "a*b",
    "a#b",
    "**",
    "##",
    "*#",
    "#*",
    "a.**",
    "a.*.#.b",
    "#.#",
    "*.*",
    "a" * 255,
    "a" * 256,
    "a." * 127 + "a",
    "a." * 128,
]


def _corpus() -> list[str]:
    chance = random.Random(20261204)

    def word(alphabet: str) -> str:
        return "".join(chance.choice(alphabet) for _ in range(chance.randint(1, 7)))

    randoms = [word("ab.*#-_") for _ in range(400)] + [word("ab.*# é") for _ in range(100)]
    return list(dict.fromkeys([*EDGES, *randoms]))


CORPUS = _corpus()


async def _accepts(conn: asyncpg.Connection, function: str, value: str) -> bool:
    try:
        await conn.fetchval(f"SELECT pgmq.{function}($1)", value)
    except asyncpg.InvalidParameterValueError:
        return False
    return True


async def test_routing_keys_are_valid_in_python_exactly_when_in_sql(
    conn: asyncpg.Connection,
) -> None:
    disagree = [
        key
        for key in CORPUS
        if (routing_key_problem(key) is None) != await _accepts(conn, "validate_routing_key", key)
    ]
    assert disagree == []


async def test_patterns_are_valid_in_python_exactly_when_in_sql(conn: asyncpg.Connection) -> None:
    disagree = [
        pattern
        for pattern in CORPUS
        if (topic_pattern_problem(pattern) is None)
        != await _accepts(conn, "validate_topic_pattern", pattern)
    ]
    assert disagree == []


@pytest.mark.slow
async def test_patterns_match_in_python_exactly_as_the_queue_layer_routes(
    conn: asyncpg.Connection,
) -> None:
    patterns = [p for p in CORPUS if topic_pattern_problem(p) is None]
    keys = [k for k in CORPUS if routing_key_problem(k) is None]
    keys += ["a.b", "a.x.b", "a.x.y.b", "b", "a", "ab", "aab", "a.a", "x.a.y"]
    await conn.execute("SELECT pgmq.create('routed')")
    await conn.execute("SELECT pgmq.bind_topic(p, 'routed') FROM unnest($1::text[]) AS p", patterns)
    for key in keys:
        routed = {
            row[0] for row in await conn.fetch("SELECT pattern FROM pgmq.test_routing($1)", key)
        }
        assert routed == {p for p in patterns if matches(p, key)}, key
