"""Does every payload a producer's ``output`` allows satisfy the consumer's ``input``?

A subset check on the JSON Schema people use for payloads: ``type`` (integer counts as a
number), ``properties``, ``required``, ``additionalProperties``, ``items``, ``enum``,
``const``, ``format``, nullable unions (``anyOf``/``oneOf`` with ``{type: null}``, type lists,
``nullable: true``), local ``$ref``, and the numeric, length and ``pattern`` bounds. Each
finding carries the JSON pointer of the payload place it is about (``*`` stands for every item
of an array). Where the check meets a keyword it does not model (``allOf``, ``not``,
``if``...) or two patterns it cannot compare, it says so (`Finding.decided` False) rather than
guess.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$schema",
        "$id",
        "$defs",
        "definitions",
        "errorMessage",
        "patternErrorMessage",
    }
)
_MODELLED = frozenset(
    {
        "$ref",
        "type",
        "nullable",
        "enum",
        "const",
        "format",
        "anyOf",
        "oneOf",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "pattern",
        *("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"),
        *("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"),
    }
)
_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")
_MAX_DEPTH = 32


@dataclass(frozen=True)
class Finding:
    """One reason the edge may fail; `decided` False when the check cannot tell."""

    pointer: str
    message: str
    decided: bool = True

    def describe(self) -> str:
        return f"at {self.pointer or '/'}: {self.message}"


def check_edge(output: dict[str, Any], input_: dict[str, Any]) -> list[Finding]:
    """Findings of the edge output -> input (empty: every allowed output is accepted)."""
    return list(_Edge(output, input_).check(output, input_, "", 0))


class _Edge:
    def __init__(self, out_root: dict[str, Any], in_root: dict[str, Any]) -> None:
        self.roots = (out_root, in_root)

    def check(self, out: Any, in_: Any, ptr: str, depth: int) -> Iterator[Finding]:
        if depth > _MAX_DEPTH:
            yield Finding(ptr, "schemas nest (or recurse) too deep to compare", False)
            return
        out, problem = _resolve(out, self.roots[0])
        if problem:
            yield Finding(ptr, f"output {problem}", False)
            return
        in_, problem = _resolve(in_, self.roots[1])
        if problem:
            yield Finding(ptr, f"input {problem}", False)
            return
        if in_ is True or _unconstrained(in_) or out is False:
            return
        if in_ is False:
            yield Finding(ptr, "the input accepts nothing here")
            return
        if out is True:
            out = {}
        yield from self._dispatch(out, in_, ptr, depth)

    def _dispatch(self, out: dict[str, Any], in_: dict[str, Any], ptr: str, depth: int) -> Any:
        branches = _branches(out)
        if branches is not None:
            for branch in branches:
                yield from self.check(branch, in_, ptr, depth + 1)
            return
        if _branches(in_) is not None:
            yield from self._into_union(out, in_, ptr, depth)
            return
        for key in sorted(set(in_) - _MODELLED - _ANNOTATIONS):
            yield Finding(ptr, f"cannot decide: the input uses '{key}'", False)
        yield from _types(out, in_, ptr)
        yield from _values(out, in_, ptr)
        yield from _bounds(out, in_, ptr)
        if _may_be(out, "object"):
            yield from self._object(out, in_, ptr, depth)
        if _may_be(out, "array") and "items" in in_:
            yield from self._items(out, in_, ptr, depth)

    def _into_union(self, out: dict[str, Any], in_: dict[str, Any], ptr: str, depth: int) -> Any:
        alternatives = _branches(in_) or []
        tried = [list(self.check(out, alt, ptr, depth + 1)) for alt in alternatives]
        if any(not findings for findings in tried):
            return
        if all(f.decided for findings in tried for f in findings):
            first = tried[0][0] if tried and tried[0] else Finding(ptr, "no alternative")
            yield Finding(
                ptr, f"the output matches none of the input's alternatives ({first.message})"
            )
        else:
            yield Finding(ptr, "cannot decide which of the input's alternatives applies", False)

    def _object(self, out: dict[str, Any], in_: dict[str, Any], ptr: str, depth: int) -> Any:
        out_props: dict[str, Any] = out.get("properties") or {}
        out_required = set(out.get("required") or [])
        for name in in_.get("required") or []:
            if name in out_required:
                continue
            where = _child(ptr, name)
            if name in out_props:
                yield Finding(where, "optional in the output but required by the input")
            else:
                yield Finding(where, "required by the input but missing from the output")
        in_props: dict[str, Any] = in_.get("properties") or {}
        out_extra = out.get("additionalProperties", True)
        for name, wanted in in_props.items():
            given = out_props.get(name, out_extra)
            if given is True and name not in out_props:
                if name in out_required or name in (in_.get("required") or []):
                    continue  # reported above, or the output requires it without a schema
                yield Finding(
                    _child(ptr, name), "cannot decide: the output does not declare it", False
                )
                continue
            yield from self.check(given, wanted, _child(ptr, name), depth + 1)
        yield from self._extra(out, in_, ptr, depth)

    def _extra(self, out: dict[str, Any], in_: dict[str, Any], ptr: str, depth: int) -> Any:
        allowed = in_.get("additionalProperties", True)
        if allowed is True:
            return
        in_props = in_.get("properties") or {}
        for name, given in (out.get("properties") or {}).items():
            if name in in_props:
                continue
            if allowed is False:
                yield Finding(
                    _child(ptr, name), "the input does not accept it (additionalProperties: false)"
                )
            else:
                yield from self.check(given, allowed, _child(ptr, name), depth + 1)
        if out.get("additionalProperties", True) is not False and allowed is False:
            yield Finding(
                ptr,
                "the output allows properties the input refuses "
                "(give the output additionalProperties: false)",
            )

    def _items(self, out: dict[str, Any], in_: dict[str, Any], ptr: str, depth: int) -> Any:
        wanted, given = in_["items"], out.get("items", True)
        if isinstance(wanted, list) or isinstance(given, list) or "prefixItems" in out:
            yield Finding(ptr, "cannot decide: tuple-style items", False)
            return
        yield from self.check(given, wanted, f"{ptr}/*", depth + 1)


def _resolve(node: Any, root: dict[str, Any]) -> tuple[Any, str | None]:
    """`node` with a local ``$ref`` followed (siblings of the ref are kept)."""
    seen = 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref: str = node["$ref"]
        if not ref.startswith("#") or seen > _MAX_DEPTH:
            return None, f"uses $ref '{ref}', which cannot be followed"
        target: Any = root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            key = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or key not in target:
                return None, f"has a $ref '{ref}' that points nowhere"
            target = target[key]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **rest} if isinstance(target, dict) and rest else target
        seen += 1
    return node, None


def _unconstrained(schema: Any) -> bool:
    return isinstance(schema, dict) and not (set(schema) - _ANNOTATIONS)


def _branches(schema: dict[str, Any]) -> list[Any] | None:
    """The alternatives of a union (anyOf/oneOf, or several types), each with the rest merged."""
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            rest = {k: v for k, v in schema.items() if k != key}
            return [_merge(rest, b) for b in schema[key]]
    types = _declared_types(schema)
    if types is not None and len(types) > 1 and "enum" not in schema and "const" not in schema:
        return [{**schema, "type": t, "nullable": False} for t in sorted(types)]
    return None


def _merge(rest: dict[str, Any], branch: Any) -> Any:
    if not isinstance(branch, dict) or not rest:
        return branch
    return {**rest, **branch}


def _declared_types(schema: dict[str, Any]) -> set[str] | None:
    kind = schema.get("type")
    if kind is None:
        types = None
    elif isinstance(kind, str):
        types = {kind}
    else:
        types = set(kind)
    if types is not None and schema.get("nullable") is True:
        types.add("null")
    return types


def _value_types(values: list[Any]) -> set[str]:
    def kind(value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, int):
            return "integer"
        if isinstance(value, float):
            return "integer" if value.is_integer() else "number"
        if isinstance(value, list):
            return "array"
        return "object" if isinstance(value, dict) else "string"

    return {kind(v) for v in values}


def _types_of(schema: dict[str, Any]) -> set[str] | None:
    values = _enum(schema)
    if values is not None:
        return _value_types(values)
    return _declared_types(schema)


def _may_be(schema: dict[str, Any], kind: str) -> bool:
    types = _types_of(schema)
    return types is None or kind in types


def _types(out: dict[str, Any], in_: dict[str, Any], ptr: str) -> Iterator[Finding]:
    wanted = _declared_types(in_)
    if wanted is None:
        return
    if "number" in wanted:
        wanted = wanted | {"integer"}
    given = _types_of(out)
    if given is None:
        yield Finding(ptr, f"the output may be any type; the input takes {_list(wanted)}")
        return
    extra = given - wanted
    if extra:
        yield Finding(ptr, f"the output may be {_list(extra)}; the input takes {_list(wanted)}")


def _list(types: set[str]) -> str:
    ordered = [t for t in _TYPES if t in types and not (t == "integer" and "number" in types)]
    return " or ".join(ordered)


def _enum(schema: dict[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    values = schema.get("enum")
    return list(values) if isinstance(values, list) else None


def _same(a: Any, b: Any) -> bool:
    return (type(a) is type(b) and a == b) or (
        isinstance(a, int | float)
        and isinstance(b, int | float)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def _values(out: dict[str, Any], in_: dict[str, Any], ptr: str) -> Iterator[Finding]:
    wanted = _enum(in_)
    given = _enum(out)
    if wanted is not None:
        if given is None:
            yield Finding(ptr, f"the output is not limited to the input's values {_json(wanted)}")
        else:
            extra = [v for v in given if not any(_same(v, w) for w in wanted)]
            if extra:
                yield Finding(
                    ptr, f"the output may be {_json(extra)[1:-1]}, which the input does not accept"
                )
    fmt = in_.get("format")
    if fmt is not None and out.get("format") != fmt and given is None:
        if out.get("format") is None:
            yield Finding(ptr, f"the output does not promise format '{fmt}'")
        else:
            yield Finding(ptr, f"the output has format '{out['format']}', the input wants '{fmt}'")


def _bounds(out: dict[str, Any], in_: dict[str, Any], ptr: str) -> Iterator[Finding]:
    if _enum(out) is not None:
        return  # listed values: bounds are not modelled per value
    for keys, sign in ((_LOWER, 1), (_UPPER, -1)):
        for key in keys:
            if key not in in_:
                continue
            if key not in out:
                yield Finding(ptr, f"the output has no {key}; the input's is {in_[key]}")
            elif sign * out[key] < sign * in_[key]:
                yield Finding(ptr, f"the output's {key} {out[key]} is looser than {in_[key]}")
    pattern = in_.get("pattern")
    if pattern is not None and out.get("pattern") != pattern:
        if out.get("pattern") is None:
            yield Finding(ptr, f"the output does not promise the input's pattern '{pattern}'")
        else:
            yield Finding(ptr, "cannot decide: the output and input patterns differ", False)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _child(ptr: str, name: str) -> str:
    return f"{ptr}/{name.replace('~', '~0').replace('/', '~1')}"
