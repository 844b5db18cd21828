-- Metrics: queue length, visible length, ages, the number of messages ever sent and (for a
-- partitioned queue) the rows waiting in its default partitions.

-- Messages ever sent to a queue: the last value of its msg_id sequence (identity or serial).
-- Sequences are not transactional, so sends that rolled back are counted too.
CREATE OR REPLACE FUNCTION pgmq_ext.total_messages(queue_table text)
RETURNS bigint
LANGUAGE sql STABLE
RETURN coalesce(
    pg_catalog.pg_sequence_last_value(pg_catalog.pg_get_serial_sequence(queue_table, 'msg_id')::regclass),
    0);

-- Rows in the default partitions of a partitioned queue (queue and archive), as the planner
-- estimates them (PGMQ's definition: cheap at any size); NULL for a queue without partitions.
-- A partitioned queue's default partitions are pgmq_ext.q_<name>_default and a_<name>_default.
CREATE OR REPLACE FUNCTION pgmq_ext.default_partition_length(qname text)
RETURNS bigint
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(sum(greatest(c.reltuples, 0))::bigint, 0)
      FROM pg_catalog.pg_class c
     WHERE c.oid IN (to_regclass('pgmq_ext.' || quote_ident('q_' || qname || '_default')),
                     to_regclass('pgmq_ext.' || quote_ident('a_' || qname || '_default')))
    HAVING count(*) > 0
$$;

CREATE OR REPLACE FUNCTION pgmq.metrics(queue_name text)
RETURNS pgmq.metrics_result
LANGUAGE plpgsql
AS $$
DECLARE
    tab text := pgmq_ext.queue_table(queue_name);
    qname text := lower(queue_name COLLATE "C");
    result pgmq.metrics_result;
BEGIN
    EXECUTE format(
        'SELECT $1, count(*),'
        ' extract(epoch FROM $2 - max(enqueued_at))::integer,'
        ' extract(epoch FROM $2 - min(enqueued_at))::integer,'
        ' $3, $2, count(*) FILTER (WHERE vt <= $2), $4'
        ' FROM %s', tab)
        INTO result
        USING qname, now(), pgmq_ext.total_messages(tab), pgmq_ext.default_partition_length(qname);
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION pgmq.metrics_all()
RETURNS SETOF pgmq.metrics_result
LANGUAGE plpgsql
AS $$
DECLARE
    qname text;
BEGIN
    FOR qname IN SELECT m.queue_name FROM pgmq.meta m ORDER BY m.queue_name LOOP
        BEGIN
            RETURN NEXT pgmq.metrics(qname);
        EXCEPTION WHEN undefined_table THEN
            NULL;  -- dropped since the loop started
        END;
    END LOOP;
END
$$;
