"""Is the database at the version of the pipeline files? (`orchestrator run` asks first.)

A worker must not run handlers of one version against queues provisioned for another, so it
compares the spec hash of every pipeline it loaded with the hash `apply` recorded; when they
differ, it may still run if the difference is one a rolling deploy bridges (see `rolling`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING

from orchestrator.compiler.rolling import pipeline_problems
from orchestrator.errors import QueueMissing, SchemaMissing
from orchestrator.state import missing_queues, read_applied_records, read_layers

if TYPE_CHECKING:
    import asyncpg

    from orchestrator.spec import Pipeline

_HINT = "run orchestrator apply"


async def applied_hashes(conn: asyncpg.Connection) -> dict[str, str]:
    """Pipeline name -> spec hash recorded by the last apply; empty without schema orchestrator."""
    layers = await read_layers(conn, versions=False)
    if not layers.has_pipelines:
        return {}
    return {name: record.spec_hash for name, record in (await read_applied_records(conn)).items()}


async def check_applied(
    conn: asyncpg.Connection,
    pipelines: Iterable[Pipeline],
    steps: Mapping[str, Collection[str]] | None = None,
) -> None:
    """Raise `SchemaMissing` unless the layers exist and every pipeline is applied as it is,
    or differs only in ways a rolling deploy bridges for the `steps` ({pipeline: steps}, by
    default all) the caller runs."""
    layers = await read_layers(conn, versions=False)
    if not layers.queue_present:
        raise SchemaMissing(f"the queue layer is not installed in this database; {_HINT}")
    if not layers.store_present:
        raise SchemaMissing(f"schema orchestrator is missing in this database; {_HINT}")
    rows = await read_applied_records(conn)
    problems = []
    for pipeline in pipelines:
        recorded = rows.get(pipeline.name)
        if recorded is None:
            problems.append(f"pipeline {pipeline.name} is not applied")
        elif recorded.spec_hash != pipeline.spec_hash():
            chosen = None if steps is None else steps.get(pipeline.name)
            unsafe = pipeline_problems(pipeline, recorded.spec, chosen)
            if unsafe:
                problems.append(
                    f"pipeline {pipeline.name} changed since it was applied ({'; '.join(unsafe)})"
                )
    if problems:
        raise SchemaMissing(f"{'; '.join(problems)}; {_HINT}")


async def check_queues(conn: asyncpg.Connection, queues: Iterable[str]) -> None:
    """Raise `QueueMissing` when one of `queues` (the step queues a worker will read) does not
    exist: it was dropped by hand after apply. `orchestrator plan` shows it as drift."""
    missing = await missing_queues(conn, queues)
    if missing:
        many = len(missing) > 1
        raise QueueMissing(
            f"queue{'s' if many else ''} {', '.join(missing)} {'do' if many else 'does'} not "
            f"exist; {_HINT} (orchestrator plan shows the drift)"
        )
