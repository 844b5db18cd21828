"""orchestrator: a Postgres-native, declarative pipeline orchestrator.

Layers (data flows one way): `spec` (YAML -> typed models) -> `compiler` (models -> plan -> SQL)
-> Postgres <- `queue` (PGMQ-compatible SQL layer + async client) <- `runtime` (workers).

The public API for application code::

    import orchestrator

    run_id = await orchestrator.start("work_orders", {"file": "a.csv"}, conn=app_conn)

    async def generate_barcode(payload: dict, ctx: orchestrator.StepContext) -> dict | None:
        if not ready(payload):
            raise orchestrator.Retry(after=30)
        ...

These names load the runtime on first use, so importing another part of the package (the
spec, the CLI) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from orchestrator.runtime.api import start, start_keyed, start_many
    from orchestrator.runtime.context import Fail, Retry, StepContext
    from orchestrator.runtime.control import cancel, pause, resume

__all__ = [
    "Fail",
    "Retry",
    "StepContext",
    "__version__",
    "cancel",
    "pause",
    "resume",
    "start",
    "start_keyed",
    "start_many",
]

_RUNTIME_EXPORTS = {
    "start": "orchestrator.runtime.api",
    "start_many": "orchestrator.runtime.api",
    "start_keyed": "orchestrator.runtime.api",
    "pause": "orchestrator.runtime.control",
    "resume": "orchestrator.runtime.control",
    "cancel": "orchestrator.runtime.control",
    "StepContext": "orchestrator.runtime.context",
    "Retry": "orchestrator.runtime.context",
    "Fail": "orchestrator.runtime.context",
}


def __getattr__(name: str) -> Any:
    module = _RUNTIME_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
