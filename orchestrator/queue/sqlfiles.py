"""The queue layer's SQL, shipped as package data in `orchestrator/queue/sql/`.

- `schema.sql`: tables and types at the latest version, for a fresh install;
- `migrations/NNNN_name.sql`: the same schema built step by step; version N is the database
  after migration N, so `0001` alone is the oldest install;
- `functions/*.sql`: every function, applied in file order with CREATE OR REPLACE after each
  install or upgrade (a migration drops a function first when its signature changes).

The files are read by the one installer of packages of SQL (`orchestrator.db.install`).
"""

from __future__ import annotations

from orchestrator.db.install import Migration, SqlPackage

__all__ = [
    "QUEUE_SQL",
    "Migration",
    "functions_sha256",
    "functions_sql",
    "latest_version",
    "migrations",
    "pending_migrations",
    "schema_sql",
]

QUEUE_SQL = SqlPackage(
    "orchestrator.queue",
    # pg_advisory_xact_lock key of the installer: the bytes of "orchqins" as a bigint.
    lock_key=int.from_bytes(b"orchqins", "big", signed=True),
    schema_is_latest=True,
)

schema_sql = QUEUE_SQL.schema_sql
migrations = QUEUE_SQL.migrations
latest_version = QUEUE_SQL.latest_version
pending_migrations = QUEUE_SQL.pending_migrations
functions_sql = QUEUE_SQL.functions_sql
functions_sha256 = QUEUE_SQL.functions_sha256
