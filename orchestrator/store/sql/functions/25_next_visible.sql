-- When each of the queues `queue_names` next holds a visible message: seconds from now (zero
-- or less: one is visible already), or NULL for a queue that holds none at all. A worker asks
-- this once for all the queues it consumes, so that its idle consumers sleep until a delayed
-- message, a retry's backoff or an expired lease makes a message visible without a
-- notification. A missing queue raises undefined_table (pgmq_ext.queue_table).
CREATE OR REPLACE FUNCTION orchestrator.next_visible(queue_names text[])
RETURNS TABLE (queue_name text, seconds double precision)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    q text;
    due timestamptz;
BEGIN
    FOREACH q IN ARRAY queue_names LOOP
        EXECUTE format('SELECT min(vt) FROM %s', pgmq_ext.queue_table(q)) INTO due;
        queue_name := q;
        seconds := extract(epoch FROM due - clock_timestamp());
        RETURN NEXT;
    END LOOP;
END
$$;
