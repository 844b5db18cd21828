"""Database access: where the DSN comes from, connections with our codecs, the embedded server.

Owns: DSN resolution (`--dsn` > `DATABASE_URL` > embedded PostgreSQL), the asyncpg pool and
connection factory (jsonb codec registered once per connection), how a DSN reaches the server
(directly, or through a pooler in session or transaction mode; TLS settings), password
redaction.
Must not import: spec, compiler, runtime, ops.
"""

from orchestrator.db.connect import (
    PoolMode,
    connect,
    create_pool,
    init_connection,
    pool_mode,
    pooler_problem,
)
from orchestrator.db.dsn import redact, resolve_dsn

__all__ = [
    "PoolMode",
    "connect",
    "create_pool",
    "init_connection",
    "pool_mode",
    "pooler_problem",
    "redact",
    "resolve_dsn",
]
