-- Queries of the store's installer (orchestrator.store.install). Each query starts with a
-- `-- name: <name>` line followed by a one-line description.

-- name: version_table
-- Schema orchestrator's version table, NULL when it is not installed.
SELECT to_regclass('orchestrator.schema_version')

-- name: installed_version
-- Version of schema orchestrator in the database.
SELECT max(version) FROM orchestrator.schema_version

-- name: record_version
-- Record that version $1 (a migration named $2) is installed.
INSERT INTO orchestrator.schema_version (version, name) VALUES ($1, $2)

-- name: recorded_checksum
-- Checksum of the function files applied at version $1.
SELECT functions_sha256 FROM orchestrator.schema_version WHERE version = $1

-- name: record_checksum
-- Record checksum $1 of the function files applied at version $2.
UPDATE orchestrator.schema_version SET functions_sha256 = $1 WHERE version = $2
