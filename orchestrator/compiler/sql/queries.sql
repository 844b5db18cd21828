-- Catalog queries of the compiler. Each query starts with a `-- name: <name>` line followed by
-- a one-line description; catalog.py loads them by name. They only read.

-- name: queues
-- Every queue with its tables' persistence, its insert-notification trigger, if any,
-- which of its tables carry the run_id index (named <table>_run_id, beside the table), and
-- whether its table carries the FIFO group index (q_<queue>_group_idx, the name the queue
-- layer's pgmq_ext.group_index_name gives it).
-- The trigger's arguments are (channel, throttle in ms, name of the throttle sequence).
SELECT m.queue_name::text AS name,
       m.is_partitioned,
       m.is_unlogged,
       q.oid IS NOT NULL AS has_table,
       coalesce(q.relpersistence = 'u', false) AS table_unlogged,
       a.oid IS NOT NULL AS has_archive,
       t.oid IS NOT NULL AS has_notify,
       split_part(encode(t.tgargs, 'escape'), '\000', 2) AS notify_throttle,
       to_regclass(nullif(split_part(encode(t.tgargs, 'escape'), '\000', 3), '')) IS NOT NULL
           AS notify_sequence_ok,
       EXISTS (SELECT FROM pg_catalog.pg_index i
                WHERE i.indrelid = q.oid
                  AND i.indexrelid = to_regclass('pgmq.' || quote_ident('q_' || m.queue_name || '_run_id')))
           AS queue_run_id_index,
       EXISTS (SELECT FROM pg_catalog.pg_index i
                WHERE i.indrelid = a.oid
                  AND i.indexrelid = to_regclass('pgmq.' || quote_ident('a_' || m.queue_name || '_run_id')))
           AS archive_run_id_index,
       EXISTS (SELECT FROM pg_catalog.pg_index i
                WHERE i.indrelid = q.oid
                  AND i.indexrelid = to_regclass('pgmq.' || quote_ident('q_' || m.queue_name || '_group_idx')))
           AS fifo_index
  FROM pgmq.meta m
  LEFT JOIN pg_catalog.pg_class q
         ON q.oid = to_regclass('pgmq.' || quote_ident('q_' || m.queue_name))
  LEFT JOIN pg_catalog.pg_class a
         ON a.oid = to_regclass('pgmq.' || quote_ident('a_' || m.queue_name))
  LEFT JOIN pg_catalog.pg_trigger t
         ON t.tgrelid = q.oid AND t.tgname = 'notify_insert' AND NOT t.tgisinternal
 ORDER BY m.queue_name;

-- name: partitions
-- Partitioning of each partitioned queue: time ranges (seconds) or msg_id ranges (messages).
SELECT c.queue_name::text AS name,
       CASE
           WHEN c.partition_by = 'msg_id' THEN 'msg_id'
           WHEN extract(year FROM c.time_interval) * 12 + extract(month FROM c.time_interval) > 0
               THEN 'months'
           ELSE 'time'
       END AS by,
       CASE
           WHEN c.partition_by = 'msg_id' THEN c.id_interval::float8
           WHEN extract(year FROM c.time_interval) * 12 + extract(month FROM c.time_interval) > 0
               THEN (extract(year FROM c.time_interval) * 12
                     + extract(month FROM c.time_interval))::float8
           ELSE extract(epoch FROM c.time_interval)::float8
       END AS interval,
       CASE
           WHEN c.partition_by = 'msg_id' THEN c.id_retention::float8
           ELSE extract(epoch FROM c.time_retention)::float8
       END AS retention
  FROM pgmq_ext.partition_config c;

-- name: join_counts
-- Join state per join step: runs still waiting for predecessors, and all rows.
SELECT pipeline, step,
       count(*) FILTER (WHERE completed_at IS NULL) AS open,
       count(*) AS total
  FROM orchestrator.joins
 GROUP BY pipeline, step
 ORDER BY pipeline, step;

-- name: topic_bindings
-- Every topic binding of the queue layer: (pattern, queue).
SELECT pattern, queue_name AS queue
  FROM pgmq.topic_bindings
 ORDER BY queue_name, pattern;

-- name: role_exists
-- True when role $1 exists.
SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $1);

-- name: queue_relations
-- Relations a worker of queues $1 (text[]) touches: queue and archive tables, their
-- partitions (one level deep, in pgmq_ext), the msg_id sequences (identity or serial) and the
-- insert-notification throttle sequences. kind is 'table' or 'sequence'.
WITH parents AS (
    SELECT c.oid
      FROM unnest($1::text[]) AS q(name)
     CROSS JOIN (VALUES ('q_'), ('a_')) AS p(prefix)
      JOIN pg_catalog.pg_class c ON c.oid = to_regclass('pgmq.' || quote_ident(p.prefix || q.name))
), tables AS (
    SELECT oid FROM parents
    UNION
    SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN parents p ON i.inhparent = p.oid
), sequences AS (
    SELECT d.objid AS oid
      FROM pg_catalog.pg_depend d
      JOIN tables t ON d.refobjid = t.oid
      JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
     WHERE d.classid = 'pg_catalog.pg_class'::regclass
       AND d.refclassid = 'pg_catalog.pg_class'::regclass
       AND d.deptype IN ('a', 'i')
    UNION
    SELECT to_regclass('pgmq_ext.' || quote_ident('q_' || q.name || '_notify'))
      FROM unnest($1::text[]) AS q(name)
)
SELECT n.nspname AS schema,
       c.relname AS name,
       CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END AS kind
  FROM (SELECT oid FROM tables UNION SELECT oid FROM sequences) r
  JOIN pg_catalog.pg_class c ON c.oid = r.oid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 ORDER BY kind DESC, n.nspname, c.relname;
