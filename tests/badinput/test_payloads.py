"""Payloads `orchestrator send` and `orchestrator.start` must refuse, sending nothing.

A payload is a JSON object of at most 1 MiB (serialised) without NUL characters. Anything
else is refused with one line and exit 1 before a single message is enqueued; a JSON lines
file is all or nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import QueueError
from orchestrator.runtime.api import MAX_PAYLOAD_BYTES, start, start_many
from tests.badinput.support import DatabaseState, assert_refused, cli, lines_of, main


def _padded(size: int) -> bytes:
    """A JSON object of exactly `size` bytes."""
    empty = len(json.dumps({"x": ""}, separators=(",", ":")))
    return json.dumps({"x": "a" * (size - empty)}, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("[]", "must be a JSON object, not an array"),
        ('"text"', "must be a JSON object, not a string"),
        ("42", "must be a JSON object, not a number"),
        ("1.5e3", "must be a JSON object, not a number"),
        ("true", "must be a JSON object, not a boolean"),
        ("null", "must be a JSON object, not null"),
        ("{", "not valid JSON"),
        ("{'a': 1}", "not valid JSON"),
        ('{"a": 1,}', "not valid JSON"),
        ('{"a": NaN}', "not valid JSON"),
        ("", "not valid JSON"),
        ('{"a": 1} {"b": 2}', "not valid JSON"),
        ('{"a": "\\u0000"}', "NUL character"),
        ('{"\\u0000": 1}', "NUL character"),
        ('{"a": ["ok", {"b": "x\\u0000y"}]}', "NUL character"),
        ("[" * 5000 + "]" * 5000, "not valid JSON"),
    ],
)
def test_bad_payloads_as_arguments(shared: tuple[str, Path], payload: str, fragment: str) -> None:
    dsn, _ = shared
    before = DatabaseState.read(dsn)
    result = main("send", "orders", payload, "--dsn", dsn)
    assert_refused(result, 1, fragment)
    assert result.out == ""
    assert before.differences(DatabaseState.read(dsn)) == {}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "not valid JSON"),
        (b"   \n", "not valid JSON"),
        (b'{"a": 1', "not valid JSON"),
        (b'{"a": "\xff\xfe"}', "not valid JSON"),
        (b'{"a": "x\x00y"}', "not valid JSON"),
        (b'{"a": "\\u0000"}', "NUL character"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (_padded(MAX_PAYLOAD_BYTES + 1), "the limit is 1,048,576"),
        (_padded(8 * MAX_PAYLOAD_BYTES), "the limit is 1,048,576"),
    ],
)
def test_bad_payloads_on_stdin(shared: tuple[str, Path], data: bytes, fragment: str) -> None:
    dsn, _ = shared
    before = DatabaseState.read(dsn)
    result = main("send", "orders", "-", "--dsn", dsn, stdin=data)
    assert_refused(result, 1, fragment)
    assert before.differences(DatabaseState.read(dsn)) == {}


def test_a_refused_payload_as_a_user_sees_it(shared: tuple[str, Path]) -> None:
    """The same refusals from a real process: exit status, stderr, nothing on stdout."""
    dsn, _ = shared
    before = DatabaseState.read(dsn)
    assert_refused(cli("send", "orders", "[1]", "--dsn", dsn), 1, "must be a JSON object")
    big = cli("send", "orders", "-", "--dsn", dsn, stdin=_padded(MAX_PAYLOAD_BYTES + 1))
    assert_refused(big, 1, "the payload is 1,048,577 bytes of JSON; the limit is 1,048,576")
    assert big.out == ""
    assert before.differences(DatabaseState.read(dsn)) == {}


def test_a_payload_of_exactly_the_limit_is_sent(applied: str) -> None:
    result = cli("send", "orders", "-", "--dsn", applied, stdin=_padded(MAX_PAYLOAD_BYTES))
    assert result.code == 0, result.text
    assert len(lines_of(result.out)) == 1


def test_a_json_lines_file_is_all_or_nothing(shared: tuple[str, Path], tmp_path: Path) -> None:
    applied, _ = shared
    runs = tmp_path / "runs.jsonl"
    good = [json.dumps({"n": n}) for n in range(50)]
    bad = ["[1]", "{oops", '{"a": "\\u0000"}']
    runs.write_text("\n".join(good[:20] + bad + good[20:]) + "\n")
    before = DatabaseState.read(applied)
    result = main("send", "orders", "--file", str(runs), "--dsn", applied)
    assert result.code == 1
    assert "Traceback" not in result.text
    assert lines_of(result.err) == [
        f"{runs}:21:1: error: the payload must be a JSON object, not an array",
        f"{runs}:22:2: error: not valid JSON: unexpected character, expected a string key",
        f"{runs}:23:1: error: the payload['a'] contains a NUL character (\\u0000), which "
        "PostgreSQL cannot store in jsonb",
        f"orchestrator: error: 3 invalid lines in {runs}; nothing was sent",
    ]
    assert result.out == ""
    assert before.differences(DatabaseState.read(applied)) == {}


def test_a_file_that_is_not_text(shared: tuple[str, Path], tmp_path: Path) -> None:
    applied, _ = shared
    runs = tmp_path / "runs.jsonl"
    runs.write_bytes(bytes(range(256)))
    before = DatabaseState.read(applied)
    result = main("send", "orders", "--file", str(runs), "--dsn", applied)
    assert result.code == 1
    assert "Traceback" not in result.text
    assert result.err.strip().splitlines()[-1].startswith("orchestrator: error: ")
    assert before.differences(DatabaseState.read(applied)) == {}


class _Opaque:
    """Not JSON: a Python object a payload might smuggle in."""


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ([1, 2], "must be a JSON object"),
        ("{}", "must be a JSON object"),
        (None, "must be a JSON object"),
        ({"a": {1, 2}}, "not JSON-serialisable"),
        ({"a": _Opaque()}, "not JSON-serialisable"),
        ({"a": b"bytes"}, "not JSON-serialisable"),
        ({"a": "x\x00y"}, "NUL character"),
        ({"a": "a" * MAX_PAYLOAD_BYTES}, "the limit is 1,048,576"),
    ],
)
async def test_the_python_api_refuses_bad_payloads_before_any_sql(
    shared: tuple[str, Path], payload: object, fragment: str
) -> None:
    from orchestrator.db import connect

    db = await connect(shared[0])
    logged: list[str] = []
    db.add_query_logger(lambda q: logged.append(q.query))
    try:
        with pytest.raises(QueueError, match=fragment.replace("(", r"\(")):
            await start("orders", payload, conn=db)  # type: ignore[arg-type]
        with pytest.raises(QueueError, match=fragment.replace("(", r"\(")):
            await start_many("orders", [{"ok": 1}, payload], conn=db)  # type: ignore[list-item]
    finally:
        await db.close()
    assert logged == []
