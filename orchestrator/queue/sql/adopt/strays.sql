-- Relations in schema pgmq that adoption would not carry over: anything that is not PGMQ's
-- registry (meta, notify_insert_throttle, topic_bindings), a queue's table pair, or an index
-- or sequence of one of those.
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
