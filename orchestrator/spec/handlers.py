"""Handler references (``package.module:function``): their syntax, import and signature.

`resolve_handler` imports the module with the current working directory on ``sys.path`` (so
``pipelines.handlers.x:f`` works from the project root) and returns the callable.
`inspect_handler` checks the calling convention the runtime relies on: an ``async def``
handler takes ``(payload, ctx)``; a plain ``def`` handler takes ``(payload)`` or
``(payload, ctx)``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ConfigError

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
HANDLER_PATTERN = rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}(\.{_IDENTIFIER})*$"
"""Regex of a handler reference: dotted module path, a colon, attribute path."""

HANDLER_HINT = "a handler is written as 'package.module:function'"


class HandlerError(ConfigError):
    """A handler reference that cannot be imported or has the wrong signature."""


@dataclass(frozen=True)
class HandlerInfo:
    """A resolved handler and how to call it."""

    ref: str
    function: Callable[..., Any]
    is_async: bool
    takes_context: bool
    """True: call ``function(payload, ctx)``; False: call ``function(payload)``."""


def split_ref(ref: str) -> tuple[str, str]:
    """``("package.module", "function")``; raises HandlerError when malformed."""
    module, sep, attribute = ref.partition(":")
    if not sep or not module or not attribute:
        raise HandlerError(f"malformed handler '{ref}'; {HANDLER_HINT}")
    return module, attribute


def resolve_handler(ref: str) -> Callable[..., Any]:
    """Import the module of `ref` (cwd on sys.path) and return the referenced attribute."""
    module_name, attribute = split_ref(ref)
    _ensure_cwd_on_path()
    try:
        target: Any = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # a module that fails or exits while importing
        raise HandlerError(f"cannot import '{module_name}': {_describe(exc)}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HandlerError(f"module '{module_name}' has no attribute '{attribute}'") from None
    if not callable(target):
        raise HandlerError(f"handler '{ref}' is not callable")
    return target  # type: ignore[no-any-return]


def inspect_handler(ref: str) -> HandlerInfo:
    """Resolve `ref` and check its signature; raises HandlerError with what is wrong."""
    function = resolve_handler(ref)
    is_async = _is_async(function)
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # builtins without a signature: trust the declaration
        return HandlerInfo(ref, function, is_async, takes_context=True)
    takes_context = _accepts(signature, 2)
    if is_async and not takes_context:
        raise HandlerError(f"async handler '{ref}' must accept (payload, ctx), not {signature}")
    if not is_async and not (takes_context or _accepts(signature, 1)):
        raise HandlerError(
            f"handler '{ref}' must accept (payload) or (payload, ctx), not {signature}"
        )
    return HandlerInfo(ref, function, is_async, takes_context)


def _accepts(signature: inspect.Signature, count: int) -> bool:
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def _is_async(function: Callable[..., Any]) -> bool:
    call = getattr(function, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)


def _ensure_cwd_on_path() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
