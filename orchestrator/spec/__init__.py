"""Pipeline specifications: YAML -> typed models -> graph, with file:line:col diagnostics.

Owns: loading YAML with marks and duplicate-key detection, the JSON Schema, the pydantic models,
graph checks, queue naming, cron expressions, handler references. Offline: must not
import asyncpg, db, queue, compiler, runtime.

Entry points for the other layers::

    from orchestrator.spec import load_pipelines_or_raise
    for pipeline in load_pipelines_or_raise("pipelines"):
        pipeline.entry_step, pipeline.step("barcode").timeout, pipeline.spec_hash()

Durations are float seconds everywhere.
"""

from orchestrator.spec.diagnostics import Diagnostic
from orchestrator.spec.handlers import HandlerError, HandlerInfo, inspect_handler, resolve_handler
from orchestrator.spec.models import (
    ArchiveSettings,
    Defaults,
    NotifySettings,
    Partitioning,
    Pipeline,
    QueueSettings,
    ResolvedStep,
    RetryPolicy,
    RetrySettings,
    Schedule,
    Step,
    StepSettings,
)
from orchestrator.spec.validate import (
    LoadResult,
    load_pipelines,
    load_pipelines_or_raise,
    parse_pipeline,
)

__all__ = [
    "ArchiveSettings",
    "Defaults",
    "Diagnostic",
    "HandlerError",
    "HandlerInfo",
    "LoadResult",
    "NotifySettings",
    "Partitioning",
    "Pipeline",
    "QueueSettings",
    "ResolvedStep",
    "RetryPolicy",
    "RetrySettings",
    "Schedule",
    "Step",
    "StepSettings",
    "inspect_handler",
    "load_pipelines",
    "load_pipelines_or_raise",
    "parse_pipeline",
    "resolve_handler",
]
