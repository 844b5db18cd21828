"""YAML reading: marks, duplicate keys, limits and hostile input."""

from __future__ import annotations

import time

from orchestrator.spec.load import MAX_FILE_BYTES, Mark, load_bytes, load_text


def only_problem(raw: bytes) -> tuple[str, Mark | None]:
    document = load_bytes(raw)
    assert len(document.problems) == 1, document.problems
    return document.problems[0].message, document.problems[0].mark


def test_marks_of_keys_and_values() -> None:
    document = load_text("pipeline: p\nsteps:\n  a:\n    next: [b, c]\n")
    assert document.data == {"pipeline": "p", "steps": {"a": {"next": ["b", "c"]}}}
    marks = document.marks
    assert marks[("pipeline",)].key == Mark(1, 1) and marks[("pipeline",)].value == Mark(1, 11)
    assert marks[("steps", "a")].key == Mark(3, 3)
    assert marks[("steps", "a", "next", 1)].value == Mark(4, 15)


def test_locate_falls_back_to_the_closest_parent_key() -> None:
    document = load_text("steps:\n  a:\n    next: b\n")
    assert document.locate(("steps", "a", "handler")) == Mark(2, 3)
    assert document.locate(("steps", "a", "next", 0)) == Mark(3, 11)  # single value as list
    assert document.locate(("steps", "a", "next"), "key") == Mark(3, 5)
    assert document.locate(("nope",)) == Mark(1, 1)


def test_keys_stay_strings_and_timestamps_stay_text() -> None:
    document = load_text("on: 2024-01-01\nyes: 1\n1: x\nnull: ~\n")
    assert document.data == {"on": "2024-01-01", "yes": 1, "1": "x", "null": None}


def test_duplicate_keys() -> None:
    message, mark = only_problem(b"a: 1\nb: 2\na: 3\n")
    assert message == "duplicate key 'a' (first defined on line 1)" and mark == Mark(3, 1)
    assert load_bytes(b"a: 1\na: 3\n").data == {"a": 1}


def test_empty_and_comment_only_files() -> None:
    for raw in (b"", b"# nothing\n", b"\n\n"):
        message, mark = only_problem(raw)
        assert message.startswith("file is empty") and mark == Mark(1, 1)


def test_not_utf8() -> None:
    message, mark = only_problem(b"a: 1\nb: caf\xe9\n")
    assert message == "file is not valid UTF-8 (byte 0xe9)" and mark == Mark(2, 7)


def test_utf8_bom_is_accepted() -> None:
    assert load_bytes("\ufeffa: ü\n".encode()).data == {"a": "ü"}


def test_control_characters() -> None:
    message, mark = only_problem(b"a: 1\nb: \x01\n")
    assert message.startswith("invalid character") and mark == Mark(2, 4)


def test_too_large() -> None:
    message, _ = only_problem(b"#" * (MAX_FILE_BYTES + 1))
    assert "larger than" in message


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    started = time.perf_counter()
    message, mark = only_problem("\n".join(lines).encode())
    assert time.perf_counter() - started < 1
    assert "anchors and aliases are not supported" in message and mark == Mark(1, 5)


def test_deep_nesting_is_refused() -> None:
    message, _ = only_problem(b"a: " + b"[" * 5000 + b"]" * 5000)
    assert "nesting deeper than" in message


def test_custom_tags_and_non_finite_numbers() -> None:
    document = load_text("a: !secret x\nb: .nan\nc: !!binary aGk=\nd: 99999999999999999999\n")
    messages = [p.message for p in document.problems]
    assert messages == [
        "unsupported YAML tag '!secret'",
        "'.nan' is not a finite number",
        "unsupported YAML tag 'tag:yaml.org,2002:binary'",
        "integer 99999999999999999999 is too large",
    ]


def test_mapping_as_key() -> None:
    message, mark = only_problem(b"? [a, b]\n: 1\n")
    assert "mapping key must be a plain name" in message and mark == Mark(1, 3)


def test_syntax_error_position() -> None:
    message, mark = only_problem(b"a:\n  b: 1\n   c: 2\n")
    assert message.startswith("invalid YAML:") and mark == Mark(3, 5)
