-- The queues of a PGMQ installed from its SQL files, as adoption sees them: one row per
-- `pgmq.meta` row, whether its two tables exist as plain (not partitioned) tables, and whether
-- their columns are the ones the queue layer expects (the archive's in any order: PGMQ puts
-- archived_at before vt; the queue layer names its columns in every statement).
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
