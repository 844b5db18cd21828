-- Queries of the database's state (orchestrator.state). Each query starts with a
-- `-- name: <name>` line followed by a one-line description. They only read; a part that is
-- not installed reads as absent, never as an error.

-- name: layers
-- Which parts of the schema exist: the queue layer, its internals and topics, schema orchestrator, its ops functions.
SELECT to_regclass('pgmq.meta') IS NOT NULL AS has_pgmq,
       to_regclass('pgmq_ext.schema_version') IS NOT NULL AS has_versions,
       to_regclass('pgmq_ext.partition_config') IS NOT NULL AS has_partitions,
       to_regclass('orchestrator.schema_version') IS NOT NULL AS has_store,
       to_regclass('orchestrator.pipelines') IS NOT NULL AS has_pipelines,
       to_regclass('orchestrator.joins') IS NOT NULL AS has_joins,
       to_regclass('pgmq.topic_bindings') IS NOT NULL AS has_topics,
       to_regprocedure('orchestrator.ops_queue_stats(text, timestamp with time zone)') IS NOT NULL
           AS has_ops_functions,
       EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pgmq') AS has_extension;

-- name: store_version
-- Version of schema orchestrator and the checksum of its functions as last installed.
SELECT version, functions_sha256
  FROM orchestrator.schema_version
 ORDER BY version DESC
 LIMIT 1;

-- name: queue_version
-- Version of the queue layer and the checksum of its functions as last installed.
SELECT version, functions_sha256
  FROM pgmq_ext.schema_version
 ORDER BY version DESC
 LIMIT 1;

-- name: applied_pipelines
-- Applied pipelines, all or those named in $1.
SELECT name, spec, spec_hash, entry_step, applied_at
  FROM orchestrator.pipelines
 WHERE $1::text[] IS NULL OR name = ANY ($1)
 ORDER BY name;

-- name: pipeline_names
-- Names of every applied pipeline.
SELECT name FROM orchestrator.pipelines ORDER BY name;

-- name: missing_queues
-- Which of the queue names $1 have no table (dropped by hand, or never applied).
SELECT name
  FROM unnest($1::text[]) AS name
 WHERE to_regclass(format('pgmq.%I', 'q_' || name)) IS NULL
 ORDER BY name;
