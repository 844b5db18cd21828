"""orchestrator: a Postgres-native, declarative pipeline orchestrator.

Layers (data flows one way): `spec` (YAML -> typed models) -> `compiler` (models -> plan -> SQL)
-> Postgres <- `queue` (PGMQ-compatible SQL layer + async client) <- `runtime` (workers).
"""

__version__ = "0.1.0"
