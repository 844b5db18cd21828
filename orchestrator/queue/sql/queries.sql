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

-- name: read_grouped
-- FIFO groups, SQS style: consecutive messages of the oldest group first, then the next.
SELECT * FROM pgmq.read_grouped($1::text, $2::integer, $3::integer)

-- name: read_grouped_rr
-- FIFO groups, layered round-robin: each group's head, then each group's second message...
SELECT * FROM pgmq.read_grouped_rr($1::text, $2::integer, $3::integer)

-- name: read_grouped_head
-- FIFO groups: at most one message per group, the heads of up to $3 groups.
SELECT * FROM pgmq.read_grouped_head($1::text, $2::integer, $3::integer)

-- name: read_grouped_with_poll
-- read_grouped, waiting up to $4 s (polling every $5 ms) for a message.
SELECT * FROM pgmq.read_grouped_with_poll($1::text, $2::integer, $3::integer, $4::integer, $5::integer)

-- name: read_grouped_rr_with_poll
-- read_grouped_rr, waiting up to $4 s (polling every $5 ms) for a message.
SELECT * FROM pgmq.read_grouped_rr_with_poll($1::text, $2::integer, $3::integer, $4::integer, $5::integer)

-- name: read_grouped_head_with_poll
-- read_grouped_head, waiting up to $4 s (polling every $5 ms) for a message.
SELECT * FROM pgmq.read_grouped_head_with_poll($1::text, $2::integer, $3::integer, $4::integer, $5::integer)

-- name: create_fifo_index
-- The group index that keeps grouped reads cheap at any depth (idempotent).
SELECT pgmq.create_fifo_index($1::text)

-- name: create_fifo_indexes_all
-- The group index on every queue.
SELECT pgmq.create_fifo_indexes_all()

-- name: bind_topic
-- Route messages whose routing key matches pattern $1 to queue $2 (idempotent).
SELECT pgmq.bind_topic($1::text, $2::text)

-- name: unbind_topic
-- Remove a binding; whether there was one.
SELECT pgmq.unbind_topic($1::text, $2::text)

-- name: send_topic
-- Send one message (headers may be NULL) to every queue bound to routing key $1, after $4 s.
SELECT pgmq.send_topic($1::text, $2::jsonb, $3::jsonb, $4::integer)

-- name: send_batch_topic
-- Send a batch to every queue bound to routing key $1, visible $4 s from now.
SELECT queue_name, msg_id FROM pgmq.send_batch_topic($1::text, $2::text[]::jsonb[], $3::text[]::jsonb[],
    clock_timestamp() + make_interval(secs => $4::float8))

-- name: send_batch_topic_at
-- Send a batch to every queue bound to routing key $1, visible at the timestamp $4.
SELECT queue_name, msg_id FROM pgmq.send_batch_topic($1::text, $2::text[]::jsonb[], $3::text[]::jsonb[], $4::timestamptz)

-- name: list_topic_bindings
-- Every topic binding, newest first.
SELECT pattern, queue_name, bound_at, compiled_regex FROM pgmq.list_topic_bindings()

-- name: list_topic_bindings_of
-- The topic bindings of queue $1, newest first.
SELECT pattern, queue_name, bound_at, compiled_regex FROM pgmq.list_topic_bindings($1::text)

-- name: test_routing
-- The bindings routing key $1 matches, sending nothing.
SELECT pattern, queue_name, compiled_regex FROM pgmq.test_routing($1::text)

-- name: list_notify_insert_throttles
-- Queues with insert notifications, their throttle and when they last notified.
SELECT queue_name, throttle_interval_ms, last_notified_at FROM pgmq.list_notify_insert_throttles()

-- name: update_notify_insert
-- Change the throttle of a queue whose insert notifications are on.
SELECT pgmq.update_notify_insert($1::text, $2::integer)

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

-- name: adopt_has_meta
-- Adoption: whether schema pgmq has PGMQ's registry table.
SELECT to_regclass('pgmq.meta') IS NOT NULL

-- name: adopt_has_pgmq_ext
-- Adoption: whether schema pgmq_ext exists already.
SELECT to_regnamespace('pgmq_ext') IS NOT NULL

-- name: adopt_queues
-- Adoption: each PGMQ queue (a pgmq.meta row), whether its two tables exist as plain tables and
-- have the columns the queue layer expects (the archive's in any order: PGMQ puts archived_at
-- before vt; the queue layer names its columns in every statement).
WITH queues AS (
    SELECT m.queue_name::text AS given, lower(m.queue_name::text COLLATE "C") AS name,
           m.is_partitioned, m.is_unlogged,
           to_regclass('pgmq.' || quote_ident('q_' || lower(m.queue_name::text COLLATE "C"))) AS q,
           to_regclass('pgmq.' || quote_ident('a_' || lower(m.queue_name::text COLLATE "C"))) AS a
      FROM pgmq.meta m
)
SELECT qu.given, qu.name, qu.is_partitioned, qu.is_unlogged,
       coalesce((SELECT bool_and(c.relkind = 'r') FROM pg_class c WHERE c.oid IN (qu.q, qu.a))
                AND qu.q IS NOT NULL AND qu.a IS NOT NULL, false) AS plain_tables,
       coalesce(qc.columns = 'msg_id bigint,read_ct integer,enqueued_at timestamp with time zone,'
                             'last_read_at timestamp with time zone,vt timestamp with time zone,'
                             'message jsonb,headers jsonb', false) AS queue_shape,
       coalesce(ac.columns = 'archived_at timestamp with time zone,enqueued_at timestamp with time zone,'
                             'headers jsonb,last_read_at timestamp with time zone,message jsonb,'
                             'msg_id bigint,read_ct integer,vt timestamp with time zone', false) AS archive_shape
  FROM queues qu
  LEFT JOIN LATERAL (
        SELECT string_agg(att.attname || ' ' || format_type(att.atttypid, att.atttypmod), ','
                          ORDER BY att.attnum) AS columns
          FROM pg_attribute att
         WHERE att.attrelid = qu.q AND att.attnum > 0 AND NOT att.attisdropped) qc ON true
  LEFT JOIN LATERAL (
        SELECT string_agg(att.attname || ' ' || format_type(att.atttypid, att.atttypmod), ','
                          ORDER BY att.attname) AS columns
          FROM pg_attribute att
         WHERE att.attrelid = qu.a AND att.attnum > 0 AND NOT att.attisdropped) ac ON true
 ORDER BY qu.name

-- name: adopt_strays
-- Adoption: relations in schema pgmq it would not carry over (anything but PGMQ's registry
-- tables, the queues' table pairs, and their indexes and sequences).
WITH known AS (
    SELECT r.oid
      FROM pg_class r
     WHERE r.relnamespace = 'pgmq'::regnamespace
       AND (r.relname IN ('meta', 'notify_insert_throttle', 'topic_bindings')
            OR r.relname IN (SELECT p || '_' || lower(m.queue_name::text COLLATE "C")
                               FROM pgmq.meta m CROSS JOIN (VALUES ('q'), ('a')) AS x (p)))
)
SELECT c.oid::regclass::text AS name
  FROM pg_class c
 WHERE c.relnamespace = 'pgmq'::regnamespace
   AND c.oid NOT IN (SELECT oid FROM known)
   AND c.oid NOT IN (SELECT i.indexrelid FROM pg_index i WHERE i.indrelid IN (SELECT oid FROM known))
   AND c.oid NOT IN (SELECT d.objid FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                        AND d.deptype IN ('a', 'i') AND d.refobjid IN (SELECT oid FROM known))
   AND c.relkind NOT IN ('t', 'c')
 ORDER BY 1

-- name: adopt_count_sql
-- Adoption: the statement counting the rows of PGMQ table $1 (q_<name> or a_<name>).
SELECT format('SELECT count(*) FROM pgmq.%I', $1::text)

-- name: adopt_has_bindings
-- Adoption: whether PGMQ has a topic bindings table (1.11 and up).
SELECT to_regclass('pgmq.topic_bindings') IS NOT NULL

-- name: adopt_bindings
-- Adoption: PGMQ's topic bindings.
SELECT pattern, lower(queue_name COLLATE "C") FROM pgmq.topic_bindings ORDER BY 1, 2

-- name: adopt_has_throttles
-- Adoption: whether PGMQ has a notify throttle table (1.8 and up).
SELECT to_regclass('pgmq.notify_insert_throttle') IS NOT NULL

-- name: adopt_throttles
-- Adoption: PGMQ's insert notifications and their throttles.
SELECT lower(queue_name::text COLLATE "C"), throttle_interval_ms
  FROM pgmq.notify_insert_throttle ORDER BY 1
