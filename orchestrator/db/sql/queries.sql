-- Queries of the installer (orchestrator.db.install). Each query starts with a
-- `-- name: <name>` line followed by a one-line description.

-- name: install_lock
-- Serialize installs of one package of SQL until the end of the transaction.
SELECT pg_advisory_xact_lock($1::bigint)
