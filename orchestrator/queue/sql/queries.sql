-- Queries of the async client (orchestrator.queue.client). Each query starts with a
-- `-- name: <name>` line followed by a one-line description; client.py loads them by name.
-- The hot operations run the statements `statements` returns when the database has them;
-- the pgmq.* calls below are their fallback (and the path of everything else).
-- Every argument is a parameter with an explicit type, so each query resolves to exactly one
-- function overload and asyncpg can prepare it once per connection. Batches of jsonb travel
-- as text[] (one JSON document per element) and are cast to jsonb[] by the server: a JSON
-- array inside a Python list would otherwise read as another array dimension.
-- A delay or visibility time in seconds becomes a timestamp on the server's clock
-- (clock_timestamp(), as the integer overloads use), so a client clock never matters.

-- name: has_statements
-- Whether the queue layer can hand out its statements (not before that function existed).
SELECT to_regprocedure('pgmq_ext.statements(text)') IS NOT NULL

-- name: statements
-- The statements of an existing queue: name -> SQL (see functions/09_statements.sql).
SELECT name, sql FROM pgmq_ext.statements($1::text)

-- name: create
-- Create a queue (idempotent).
SELECT pgmq.create($1::text)

-- name: create_unlogged
-- Create a queue whose table is UNLOGGED (the archive is logged).
SELECT pgmq.create_unlogged($1::text)

-- name: create_partitioned
-- Create a partitioned queue: intervals are numbers of messages or time intervals.
SELECT pgmq.create_partitioned($1::text, $2::text, $3::text)

-- name: drop
-- Drop a queue and its archive; false when there is no such queue.
SELECT pgmq.drop_queue($1::text)

-- name: purge
-- Delete every message of a queue; returns how many.
SELECT pgmq.purge_queue($1::text)

-- name: list_queues
-- Every queue, oldest first.
SELECT queue_name::text, is_partitioned, is_unlogged, created_at FROM pgmq.list_queues()

-- name: send
-- Send one message, visible at once.
SELECT * FROM pgmq.send($1::text, $2::jsonb)

-- name: send_headers
-- Send one message with headers, visible at once.
SELECT * FROM pgmq.send($1::text, $2::jsonb, $3::jsonb)

-- name: send_after
-- Send one message (headers may be NULL) visible $4 seconds from now.
SELECT * FROM pgmq.send($1::text, $2::jsonb, $3::jsonb,
                        clock_timestamp() + make_interval(secs => $4::float8))

-- name: send_at
-- Send one message (headers may be NULL) visible at the timestamp $4.
SELECT * FROM pgmq.send($1::text, $2::jsonb, $3::jsonb, $4::timestamptz)

-- name: send_batch
-- Send messages (JSON texts), visible at once; msg_ids in the order of the messages.
SELECT * FROM pgmq.send_batch($1::text, $2::text[]::jsonb[])

-- name: send_batch_headers
-- Send messages with one header each, visible at once.
SELECT * FROM pgmq.send_batch($1::text, $2::text[]::jsonb[], $3::text[]::jsonb[])

-- name: send_batch_after
-- Send messages (headers may be NULL) visible $4 seconds from now.
SELECT * FROM pgmq.send_batch($1::text, $2::text[]::jsonb[], $3::text[]::jsonb[],
                              clock_timestamp() + make_interval(secs => $4::float8))

-- name: send_batch_at
-- Send messages (headers may be NULL) visible at the timestamp $4.
SELECT * FROM pgmq.send_batch($1::text, $2::text[]::jsonb[], $3::text[]::jsonb[],
                              $4::timestamptz)

-- name: read
-- Read up to $3 visible messages, hiding them for $2 seconds.
SELECT * FROM pgmq.read($1::text, $2::integer, $3::integer)

-- name: read_conditional
-- read, keeping only messages that contain the jsonb $4.
SELECT * FROM pgmq.read($1::text, $2::integer, $3::integer, $4::jsonb)

-- name: read_with_poll
-- read, waiting up to $4 seconds (polling every $5 ms) for a message.
SELECT * FROM pgmq.read_with_poll($1::text, $2::integer, $3::integer, $4::integer, $5::integer,
                                  $6::jsonb)

-- name: pop
-- Read and delete up to $2 visible messages.
SELECT * FROM pgmq.pop($1::text, $2::integer)

-- name: delete
-- Delete one message; false when it was not in the queue.
SELECT pgmq.delete($1::text, $2::bigint)

-- name: delete_many
-- Delete messages; returns the msg_ids that were deleted.
SELECT * FROM pgmq.delete($1::text, $2::bigint[])

-- name: archive
-- Move one message to the archive; false when it was not in the queue.
SELECT pgmq.archive($1::text, $2::bigint)

-- name: archive_many
-- Move messages to the archive; returns the msg_ids that were archived.
SELECT * FROM pgmq.archive($1::text, $2::bigint[])

-- name: set_vt_after
-- Make one message visible $3 seconds from now.
SELECT * FROM pgmq.set_vt($1::text, $2::bigint,
                          clock_timestamp() + make_interval(secs => $3::float8))

-- name: set_vt_at
-- Make one message visible at the timestamp $3.
SELECT * FROM pgmq.set_vt($1::text, $2::bigint, $3::timestamptz)

-- name: set_vt_many_after
-- Make messages visible $3 seconds from now.
SELECT * FROM pgmq.set_vt($1::text, $2::bigint[],
                          clock_timestamp() + make_interval(secs => $3::float8))

-- name: set_vt_many_at
-- Make messages visible at the timestamp $3.
SELECT * FROM pgmq.set_vt($1::text, $2::bigint[], $3::timestamptz)

-- name: metrics
-- Length, visible length, ages and total of one queue.
SELECT * FROM pgmq.metrics($1::text)

-- name: metrics_all
-- metrics of every queue.
SELECT * FROM pgmq.metrics_all()

-- name: enable_notify_insert
-- NOTIFY "pgmq.q_<name>.INSERT" on inserts, at most once per $2 ms.
SELECT pgmq.enable_notify_insert($1::text, $2::integer)

-- name: disable_notify_insert
-- Stop the insert notifications of a queue.
SELECT pgmq.disable_notify_insert($1::text)

-- name: run_maintenance
-- Partition upkeep of one queue: what was created, attached and dropped.
SELECT * FROM pgmq_ext.run_maintenance($1::text)

-- name: partitioned_queues
-- Names of the partitioned queues, in name order.
SELECT queue_name FROM pgmq_ext.partition_config ORDER BY queue_name

-- name: version_table
-- The queue layer's version table, NULL when it is not installed.
SELECT to_regclass('pgmq_ext.schema_version')

-- name: installed_version
-- Version of the queue layer in the database.
SELECT max(version) FROM pgmq_ext.schema_version

-- name: record_version
-- Record that version $1 (a migration named $2) is installed.
INSERT INTO pgmq_ext.schema_version (version, name) VALUES ($1, $2)

-- name: recorded_checksum
-- Checksum of the function files applied at version $1.
SELECT functions_sha256 FROM pgmq_ext.schema_version WHERE version = $1

-- name: record_checksum
-- Record checksum $1 of the function files applied at version $2.
UPDATE pgmq_ext.schema_version SET functions_sha256 = $1 WHERE version = $2

-- name: has_pgmq_extension
-- True when the real pgmq extension is installed.
SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pgmq')

-- name: taken_schemas
-- Which of the queue layer's schema names exist already (before a fresh install).
SELECT array_agg(nspname::text ORDER BY nspname) FROM pg_namespace
 WHERE nspname IN ('pgmq', 'pgmq_ext')
