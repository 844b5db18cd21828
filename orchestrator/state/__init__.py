"""The database's state: which layers are installed at which versions, and what is applied.

Owns: the one reader of both schemas' version tables (`Layers`, `read_layers`), the check that
the parts operations need exist (`ensure_prepared`), and the one reader of
`orchestrator.pipelines` (`AppliedRecord` as stored, `AppliedPipeline` as operations read it).
The compiler, operations, runtime and CLI read the state from here. Read-only.
Must not import: compiler, runtime, ops, cli, observe.
"""

from orchestrator.state.applied import (
    AppliedPipeline,
    AppliedRecord,
    AppliedStep,
    applied_pipeline,
    applied_pipelines,
    from_spec,
    read_applied_records,
)
from orchestrator.state.layers import Layers, ensure_prepared, missing_queues, read_layers

__all__ = [
    "AppliedPipeline",
    "AppliedRecord",
    "AppliedStep",
    "Layers",
    "applied_pipeline",
    "applied_pipelines",
    "ensure_prepared",
    "from_spec",
    "missing_queues",
    "read_applied_records",
    "read_layers",
]
