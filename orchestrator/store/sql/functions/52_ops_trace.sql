-- Read model of `orchestrator trace` (package orchestrator.ops): every message of one run.

-- The messages of run `run_id` in the given queues: waiting in the queue (place 'queue') or
-- in its archive (place 'archive'). Archives and dead-letter queues carry an index on
-- (headers->>'run_id'), so this reads a handful of index entries per queue; queue tables are
-- kept small by the workers. Queues that do not exist are passed over.
CREATE OR REPLACE FUNCTION orchestrator.ops_run_messages(queue_names text[], run_id text)
RETURNS TABLE (
    queue_name text,
    place text,
    msg_id bigint,
    read_ct integer,
    enqueued_at timestamptz,
    last_read_at timestamptz,
    vt timestamptz,
    archived_at timestamptz,
    message jsonb,
    headers jsonb
)
LANGUAGE plpgsql
AS $$
DECLARE
    qname text;
BEGIN
    FOREACH qname IN ARRAY queue_names LOOP
        qname := lower(qname COLLATE "C");
        IF to_regclass('pgmq.' || quote_ident('q_' || qname)) IS NOT NULL THEN
            RETURN QUERY EXECUTE format(
                'SELECT $1, ''queue''::text, msg_id, read_ct, enqueued_at, last_read_at, vt,'
                ' NULL::timestamptz, message, headers'
                ' FROM pgmq.%I WHERE headers ->> ''run_id'' = $2', 'q_' || qname)
                USING qname, run_id;
        END IF;
        IF to_regclass('pgmq.' || quote_ident('a_' || qname)) IS NOT NULL THEN
            RETURN QUERY EXECUTE format(
                'SELECT $1, ''archive''::text, msg_id, read_ct, enqueued_at, last_read_at, vt,'
                ' archived_at, message, headers'
                ' FROM pgmq.%I WHERE headers ->> ''run_id'' = $2', 'a_' || qname)
                USING qname, run_id;
        END IF;
    END LOOP;
END
$$;
