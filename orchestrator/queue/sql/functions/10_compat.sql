-- PGMQ's helpers and the compatibility overloads it still ships (1.13): same names, argument
-- names, defaults and result columns, so clients of any PGMQ generation find them.

-- PGMQ's table-name helper: lower(prefix || '_' || queue_name), refusing what PGMQ refuses
-- (with its text). The result is a name, not SQL: quote it (format('%I')) before use.
CREATE OR REPLACE FUNCTION pgmq.format_table_name(queue_name text, prefix text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    PERFORM pgmq_ext.check_name_characters(queue_name);
    RETURN lower((prefix || '_' || queue_name) COLLATE "C");
END
$$;

-- The transaction advisory lock the layer's own DDL on a queue takes (create, drop, notify
-- setup, partition maintenance), so a caller can serialize with it.
CREATE OR REPLACE FUNCTION pgmq.acquire_queue_lock(queue_name text)
RETURNS void
LANGUAGE sql
AS $$
    SELECT pgmq_ext.lock_queue(lower(queue_name COLLATE "C"))
$$;

-- Deprecated in PGMQ (a WARNING with its text), kept for the clients that still call it:
-- `partitioned` is ignored, the queue's own kind decides.
CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text, partitioned boolean)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE WARNING 'drop_queue(queue_name, partitioned) is deprecated and will be removed in PGMQ v2.0. Use drop_queue(queue_name) instead';
    RETURN pgmq.drop_queue(queue_name);
END
$$;

-- What create() does; PGMQ's create() calls it.
CREATE OR REPLACE FUNCTION pgmq.create_non_partitioned(queue_name text)
RETURNS void
LANGUAGE sql
AS $$
    SELECT pgmq_ext.create_queue(queue_name, false)
$$;

-- PGMQ converts the archive of a queue to a pg_partman-partitioned table. Here a queue and its
-- archive are partitioned together by one configuration (pgmq_ext.partition_config), so an
-- archive that is partitioned already is left alone (a NOTICE, as PGMQ), a missing one too,
-- and a plain queue's archive is refused: create the queue with create_partitioned().
CREATE OR REPLACE FUNCTION pgmq.convert_archive_partitioned(
    table_name text,
    partition_interval text DEFAULT '10000',
    retention_interval text DEFAULT '100000',
    leading_partition integer DEFAULT 10
)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    a_table text := pgmq.format_table_name(table_name, 'a');
    kind "char";
BEGIN
    SELECT c.relkind INTO kind FROM pg_catalog.pg_class c
     WHERE c.oid = to_regclass('pgmq.' || quote_ident(a_table));
    IF kind = 'p' THEN
        RAISE NOTICE 'Table % is already partitioned', a_table;
        RETURN;
    END IF;
    IF kind IS NULL THEN
        RAISE NOTICE 'Table % does not exists', a_table;
        RETURN;
    END IF;
    RAISE EXCEPTION 'cannot partition the archive of queue "%" alone: a queue and its archive are partitioned together',
        lower(table_name COLLATE "C")
        USING ERRCODE = 'feature_not_supported',
              HINT = 'Create a partitioned queue with pgmq.create_partitioned() and move the messages there.';
END
$$;

-- The queues with insert notifications and their throttles. The throttle lives in the
-- trigger's arguments and the time of the last notification in the queue's throttle
-- sequence (see 07_notify.sql); a queue never notified shows the epoch, as in PGMQ.
CREATE OR REPLACE FUNCTION pgmq.list_notify_insert_throttles()
RETURNS TABLE (queue_name text, throttle_interval_ms integer, last_notified_at timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT m.queue_name::text,
           (string_to_array(encode(t.tgargs, 'escape'), '\000'))[2]::integer,
           coalesce(to_timestamp(pg_sequence_last_value(
               to_regclass('pgmq_ext.' || quote_ident('q_' || m.queue_name || '_notify'))) / 1000.0),
               to_timestamp(0))
      FROM pgmq.meta m
      JOIN pg_catalog.pg_trigger t
        ON t.tgrelid = to_regclass('pgmq.' || quote_ident('q_' || m.queue_name))
       AND t.tgname = 'notify_insert'
     ORDER BY m.queue_name
$$;

-- Change the throttle of a queue whose insert notifications are on (PGMQ's texts otherwise).
CREATE OR REPLACE FUNCTION pgmq.update_notify_insert(queue_name text, throttle_interval_ms integer)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    qname text := lower(queue_name COLLATE "C");
BEGIN
    IF throttle_interval_ms IS NULL OR throttle_interval_ms < 0 THEN
        RAISE EXCEPTION 'throttle_interval_ms must be non-negative, got: %', coalesce(throttle_interval_ms::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = qname) THEN
        RAISE EXCEPTION 'Queue "%" does not exist. Create the queue first using pgmq.create()', queue_name
            USING ERRCODE = 'undefined_table';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgmq.list_notify_insert_throttles() l WHERE l.queue_name = qname) THEN
        RAISE EXCEPTION 'Queue "%" does not have notify_insert enabled. Enable it first using pgmq.enable_notify_insert()', queue_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pgmq.enable_notify_insert(queue_name, throttle_interval_ms);
END
$$;
