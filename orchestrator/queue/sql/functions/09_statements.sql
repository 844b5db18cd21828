-- The statements of a queue, for clients that prepare them.
--
-- The pgmq.* functions build a statement from the queue name on every call and run it with
-- EXECUTE, which parses and plans it every time. A client that keeps a connection can fetch
-- the same statements once per queue and run them as prepared statements instead (PostgreSQL
-- then caches their plans). They come from the builders the functions use, so there is one
-- source of truth for every statement; what differs is how time enters them: a function passes
-- the time as a parameter, a prepared statement takes it from statement_timestamp() (the
-- server's clock when the statement starts, stable within it, like the functions'
-- clock_timestamp() taken once per call), so the client's clock never matters.
--
-- A client must check the arguments the functions check before it runs a statement (vt >= 0,
-- qty > 0, delay >= 0, a batch not empty and with one header per message), and map an
-- undefined_table error (the queue was dropped since) to 'queue "<name>" does not exist'.

-- A call of the function `operation` of queue `queue_name` with `arguments`, returning its
-- message rows, when the queue is partitioned by msg_id and has that function; else NULL.
-- PL/pgSQL: the functions it calls are made by a later file (13_queue_functions.sql).
CREATE OR REPLACE FUNCTION pgmq_ext.by_msg_id_call(queue_name text, operation text, arguments text)
RETURNS text
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF pgmq_ext.msg_id_interval(lower(queue_name COLLATE "C")) IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN 'SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM '
           || pgmq_ext.queue_function(queue_name, operation) || '(' || arguments || ')';
END
$$;

-- name -> statement for an existing queue; raises like every API function for an unknown queue.
-- Parameters of each statement (seconds are float8 unless said otherwise; message texts of a
-- batch are text[] of JSON documents, so a JSON array cannot read as an array dimension):
--   send                  $1 delay seconds (0: at once), $2 message jsonb, $3 headers jsonb
--   send_at               $1 visible-at timestamptz, $2 message jsonb, $3 headers jsonb
--   send_batch            $1 delay seconds, $2 messages text[], $3 headers text[] (or NULL)
--   send_batch_at         $1 visible-at timestamptz, $2 messages text[], $3 headers text[]
--   read                  $1 vt seconds integer (one message)
--   read_many             $1 vt seconds integer, $2 qty integer
--   read_conditional      $1 vt seconds integer, $2 conditional jsonb (one message)
--   read_many_conditional $1 vt seconds integer, $2 qty integer, $3 conditional jsonb
--   pop                   no parameters (one message)
--   pop_many              $1 qty integer
--   delete                $1 msg_id (no rows; the command tag counts the deleted message)
--   delete_many           $1 msg_ids bigint[] -> the msg_ids deleted
--   archive               $1 msg_id -> its msg_id when it was archived
--   archive_many          $1 msg_ids bigint[] -> the msg_ids archived
--   set_vt                $1 msg_id, $2 seconds from now
--   set_vt_at             $1 msg_id, $2 timestamptz
--   set_vt_many           $1 msg_ids bigint[], $2 seconds from now
--   set_vt_many_at        $1 msg_ids bigint[], $2 timestamptz
-- The one-message reads have LIMIT 1 written out rather than a parameter: PostgreSQL can then
-- reuse one generic plan instead of planning every execution.
-- The reads and pops of several messages return them in the order the scan found them (as a
-- rule msg_id order, but not as a promise): the client sorts them by msg_id, oldest first, as
-- the functions return them. A sort in the statement (a CTE around the UPDATE, as the functions
-- use) costs PostgreSQL ~50 us in planning and execution for 100 messages; the client's, ~1 us.
-- On a queue partitioned by msg_id the reads and pops call the queue's own functions
-- (13_queue_functions.sql), which find the head's partition first and bound every statement
-- to it: a prepared statement over the whole table opens every partition on each call (with
-- 100 partitions a read took 0.6 ms of execution instead of 0.05). Their acks stay statements:
-- planned for the ids of each call, they open only the partitions that hold them.
CREATE OR REPLACE FUNCTION pgmq_ext.statements(queue_name text)
RETURNS TABLE (name text, sql text)
LANGUAGE sql STABLE
AS $$
    SELECT s.name, s.sql
      FROM (SELECT 'statement_timestamp()' AS now,
                   'statement_timestamp() + make_interval(secs => $1::float8)' AS after_1,
                   'statement_timestamp() + make_interval(secs => $2::float8)' AS after_2,
                   'statement_timestamp() + make_interval(secs => $1::integer)' AS vt_1) t
     CROSS JOIN LATERAL (VALUES
        ('send', pgmq_ext.send_sql(queue_name, t.after_1)),
        ('send_at', pgmq_ext.send_sql(queue_name, '$1::timestamptz')),
        ('send_batch', pgmq_ext.send_batch_sql(
            queue_name, t.after_1, '$2::text[]::jsonb[]', '$3::text[]::jsonb[]')),
        ('send_batch_at', pgmq_ext.send_batch_sql(
            queue_name, '$1::timestamptz', '$2::text[]::jsonb[]', '$3::text[]::jsonb[]')),
        ('read', coalesce(pgmq_ext.by_msg_id_call(queue_name, 'read', '$1::integer, 1, NULL'),
                          pgmq_ext.read_sql(queue_name, false, t.now, t.vt_1, '1', NULL))),
        ('read_many', coalesce(
            pgmq_ext.by_msg_id_call(queue_name, 'read_many', '$1::integer, $2::integer, NULL'),
            pgmq_ext.read_sql(queue_name, false, t.now, t.vt_1, '$2::integer', NULL))),
        ('read_conditional', coalesce(
            pgmq_ext.by_msg_id_call(queue_name, 'read', '$1::integer, 1, $2::jsonb'),
            pgmq_ext.read_sql(queue_name, true, t.now, t.vt_1, '1', '$2::jsonb'))),
        ('read_many_conditional', coalesce(
            pgmq_ext.by_msg_id_call(queue_name, 'read_many', '$1::integer, $2::integer, $3::jsonb'),
            pgmq_ext.read_sql(queue_name, true, t.now, t.vt_1, '$2::integer', '$3::jsonb'))),
        ('pop', coalesce(pgmq_ext.by_msg_id_call(queue_name, 'pop', '1'),
                         pgmq_ext.pop_sql(queue_name, t.now, '1'))),
        ('pop_many', coalesce(pgmq_ext.by_msg_id_call(queue_name, 'pop_many', '$1::integer'),
                              pgmq_ext.pop_sql(queue_name, t.now, '$1::integer'))),
        ('delete', pgmq_ext.delete_sql(queue_name, false)),
        ('delete_many', pgmq_ext.delete_sql(queue_name, true)),
        ('archive', pgmq_ext.archive_sql(queue_name, false)),
        ('archive_many', pgmq_ext.archive_sql(queue_name, true)),
        ('set_vt', pgmq_ext.set_vt_sql(queue_name, false, t.after_2)),
        ('set_vt_at', pgmq_ext.set_vt_sql(queue_name, false, '$2::timestamptz')),
        ('set_vt_many', pgmq_ext.set_vt_sql(queue_name, true, t.after_2)),
        ('set_vt_many_at', pgmq_ext.set_vt_sql(queue_name, true, '$2::timestamptz'))
     ) AS s (name, sql)
$$;
