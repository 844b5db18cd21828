"""YAML -> plain data plus the line/column of every key and value.

Safe and bounded: files larger than `MAX_FILE_BYTES`, nesting deeper than `MAX_DEPTH`, anchors
and aliases (the classic "billion laughs" expansion), custom tags and non-finite numbers are
refused with a located message. Mapping keys are always strings (``on:`` stays ``"on"``);
a duplicate key is an error. Timestamps stay strings, so the data is plain JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from orchestrator.spec.diagnostics import DocPath

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 20
_INT_LIMIT = 2**63

_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


@dataclass(frozen=True)
class Mark:
    """1-based position in a file."""

    line: int
    column: int


@dataclass(frozen=True)
class NodeMarks:
    """Where a value starts, and where its key starts (None for list items and the root)."""

    value: Mark
    key: Mark | None = None


@dataclass(frozen=True)
class LoadProblem:
    """A problem found while reading the file; `mark` None for the file as a whole."""

    message: str
    mark: Mark | None = Mark(1, 1)


@dataclass
class Document:
    """The data of one file and the marks of every path in it."""

    data: object
    marks: dict[DocPath, NodeMarks] = field(default_factory=dict)
    problems: list[LoadProblem] = field(default_factory=list)

    def locate(self, path: DocPath, target: str = "value") -> Mark:
        """Position of `path`; a missing path points at its closest existing parent's key.

        List indexes that do not exist where the document holds a single value instead of a
        list (``next: a`` normalised to ``[a]``) are skipped.
        """
        found: DocPath = ()
        complete = True
        for part in path:
            if (*found, part) in self.marks:
                found = (*found, part)
            elif not isinstance(part, int):
                complete = False
                break
        marks = self.marks.get(found) or NodeMarks(Mark(1, 1))
        wants_key = target == "key" or not complete
        return marks.key if wants_key and marks.key else marks.value


class _Refused(Exception):
    """Stops reading: the input is outside what pipeline files may contain."""

    def __init__(self, message: str, mark: yaml.Mark) -> None:
        super().__init__(message)
        self.mark = _mark(mark)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader composing nodes without anchors or aliases and with limited nesting."""

    depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _Refused(
                "YAML anchors and aliases are not supported; use 'defaults:' for shared settings",
                event.start_mark,
            )
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(f"nesting deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_bytes(raw: bytes) -> Document:
    """Read a pipeline file's bytes; problems are returned in `Document.problems`."""
    if len(raw) > MAX_FILE_BYTES:
        return _failed(f"file is larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        mark = _offset_mark(raw, exc.start)
        return _failed(f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})", mark)
    return load_text(text)


def load_text(text: str) -> Document:
    """Read YAML text into a `Document`."""
    try:
        loader = _BoundedLoader(text)
    except yaml.reader.ReaderError as exc:
        return _failed(
            f"invalid character {exc.character!r} in file", _offset_mark(text, exc.position)
        )
    try:
        root = loader.get_single_node()
    except _Refused as exc:
        return _failed(str(exc), exc.mark)
    except yaml.MarkedYAMLError as exc:
        return _failed(_yaml_message(exc), _mark(exc.problem_mark or exc.context_mark))
    except yaml.YAMLError as exc:
        return _failed(f"invalid YAML: {exc}")
    finally:
        loader.dispose()
    if root is None:
        return _failed("file is empty; a pipeline file needs at least 'pipeline:' and 'steps:'")
    document = Document(data=None)
    document.data = _Converter(loader, document).convert(root, ())
    if document.data is None and not document.problems:  # `---`, `~`, `null`
        return _failed(
            "the document is null; a pipeline file needs at least 'pipeline:' and 'steps:'"
        )
    return document


class _Converter:
    """Node tree -> plain data, recording marks and problems in a `Document`."""

    def __init__(self, loader: yaml.SafeLoader, document: Document) -> None:
        self.loader = loader
        self.document = document

    def convert(self, node: Node, path: DocPath, key: Mark | None = None) -> object:
        value = _mark(node.start_mark)
        if key and isinstance(node, ScalarNode) and node.value == "" and not node.style:
            value = key  # a key without value: point at the key, not past the line's end
        self.document.marks[path] = NodeMarks(value, key)
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            self._check_tag(node, _SEQ)
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _mapping(self, node: MappingNode, path: DocPath) -> dict[str, object]:
        self._check_tag(node, _MAP)
        result: dict[str, object] = {}
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_mark = _mark(key_node.start_mark)
            if not isinstance(key_node, ScalarNode):
                self._problem("a mapping key must be a plain name, not a list or mapping", key_mark)
                continue
            key = key_node.value
            if key in first_seen:
                line = first_seen[key]
                self._problem(f"duplicate key '{key}' (first defined on line {line})", key_mark)
                continue
            first_seen[key] = key_mark.line
            result[key] = self.convert(value_node, (*path, key), key_mark)
        return result

    def _scalar(self, node: Node) -> object:
        if node.tag == _TIMESTAMP:
            return node.value
        if node.tag not in _PLAIN_TAGS:
            self._problem(f"unsupported YAML tag '{node.tag}'", _mark(node.start_mark))
            return node.value
        value = self.loader.construct_object(node)
        if isinstance(value, float) and not math.isfinite(value):
            self._problem(f"'{node.value}' is not a finite number", _mark(node.start_mark))
        if isinstance(value, int) and not -_INT_LIMIT <= value < _INT_LIMIT:
            self._problem(f"integer {node.value} is too large", _mark(node.start_mark))
        return value

    def _check_tag(self, node: Node, expected: str) -> None:
        if node.tag != expected:
            self._problem(f"unsupported YAML tag '{node.tag}'", _mark(node.start_mark))

    def _problem(self, message: str, mark: Mark) -> None:
        self.document.problems.append(LoadProblem(message, mark))


def _failed(message: str, mark: Mark | None = Mark(1, 1)) -> Document:
    return Document(data=None, problems=[LoadProblem(message, mark)])


def _mark(mark: yaml.Mark | None) -> Mark:
    return Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)


def _offset_mark(content: bytes | str, offset: int) -> Mark:
    """Line and column of a character (or byte) offset."""
    newline = b"\n" if isinstance(content, bytes) else "\n"
    before = content[:offset]
    line_start = before.rfind(newline) + 1  # type: ignore[arg-type]
    return Mark(before.count(newline) + 1, offset - line_start + 1)  # type: ignore[arg-type]


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    if exc.problem == "but found another document":
        return "a pipeline file holds one YAML document; found a second one after '---'"
    problem = exc.problem or exc.context or "cannot parse"
    if exc.context and exc.problem and exc.context_mark and exc.context_mark != exc.problem_mark:
        return f"invalid YAML: {problem} ({exc.context} on line {exc.context_mark.line + 1})"
    return f"invalid YAML: {problem}"
