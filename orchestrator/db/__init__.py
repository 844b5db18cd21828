"""Database access: where the DSN comes from, connections with our codecs, the embedded server.

Owns: DSN resolution (`--dsn` > `DATABASE_URL` > embedded PostgreSQL), the asyncpg pool and
connection factory (jsonb codec registered once per connection), password redaction.
Must not import: spec, compiler, runtime, ops.
"""

from orchestrator.db.connect import connect, create_pool, init_connection
from orchestrator.db.dsn import redact, resolve_dsn

__all__ = ["connect", "create_pool", "init_connection", "redact", "resolve_dsn"]
