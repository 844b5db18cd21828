-- Read models of the dashboard (package orchestrator.ops: runs, steps): the latest runs of a
-- pipeline, the state of a page of runs, a step's activity over the last hour and its recent
-- errors. Every one reads a bounded range of an index: the archive's primary key (msg_id),
-- its archived_at index, or the run-id indexes `apply` creates; never a whole archive.

-- The statement behind ops_runs_window for entry queue `queue_name` (parameters: $1 low,
-- $2 high, $3 payload, $4 lim): separate so that tests EXPLAIN exactly what runs. With `state`,
-- only runs in that state: running (entry message still queued, or a message in one of
-- `step_queues`), dead-lettered (not running, a dead letter in `dead_letter_queue`, found
-- through its run-id index) or done (neither).
CREATE OR REPLACE FUNCTION orchestrator.ops_runs_window_sql(
    queue_name text, state text DEFAULT NULL, step_queues text[] DEFAULT NULL,
    dead_letter_queue text DEFAULT NULL
)
RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    pending text;
    running text;
    dead text;
    archived text := 'true';
    queued text := 'true';
BEGIN
    IF state IS NOT NULL THEN
        SELECT string_agg(format('SELECT headers ->> ''run_id'' FROM %s', pgmq_ext.queue_table(q)),
                          ' UNION ALL ')
          INTO pending
          FROM unnest(step_queues) AS q
         WHERE to_regclass('pgmq.' || quote_ident('q_' || lower(q COLLATE "C"))) IS NOT NULL;
        running := format('(a.headers ->> ''run_id'') IN (%s)', coalesce(pending, 'SELECT NULL'));
        -- OFFSET 0 keeps the EXISTS a probe of the run-id index per archived message (the
        -- page stops at `lim` runs): as a semi-join the planner may hash the whole dead-letter
        -- queue, or the window, for a page that needs a few thousand probes.
        dead := format('EXISTS (SELECT 1 FROM %s d WHERE d.headers ->> ''run_id'' = a.headers ->> ''run_id'' OFFSET 0)',
                       pgmq_ext.queue_table(dead_letter_queue));
        archived := CASE state
            WHEN 'running' THEN running
            WHEN 'dead-lettered' THEN format('NOT %s AND %s', running, dead)
            WHEN 'done' THEN format('NOT %s AND NOT %s', running, dead)
            ELSE 'false' END;
        queued := CASE WHEN state = 'running' THEN 'true' ELSE 'false' END;
    END IF;
    RETURN format(
        'SELECT * FROM ('
        '  (SELECT msg_id, headers ->> ''run_id'', enqueued_at, ''queue''::text, message FROM %1$s q'
        '    WHERE msg_id >= $1 AND msg_id < $2 AND ($3::jsonb IS NULL OR message @> $3) AND %3$s'
        '    ORDER BY msg_id DESC LIMIT $4)'
        '  UNION ALL'
        '  (SELECT msg_id, headers ->> ''run_id'', enqueued_at, ''archive''::text, message FROM %2$s a'
        '    WHERE msg_id >= $1 AND msg_id < $2 AND ($3::jsonb IS NULL OR message @> $3) AND %4$s'
        '    ORDER BY msg_id DESC LIMIT $4)'
        ') found (msg_id, run_id, enqueued_at, place, message) ORDER BY msg_id DESC LIMIT $4',
        pgmq_ext.queue_table(queue_name), pgmq_ext.archive_table(queue_name), queued, archived);
END
$$;

-- Entry-step messages (one per run) with msg_id in [low, high), newest first, at most `lim`,
-- from the queue (not finished yet) and its archive; `payload` (a JSON object) keeps those
-- whose body contains it, `state` those in that state (see ops_runs_window_sql). A window of
-- ids, not an OFFSET: paging costs the same on page 1000.
CREATE OR REPLACE FUNCTION orchestrator.ops_runs_window(
    queue_name text, low bigint, high bigint, payload jsonb, lim integer,
    state text DEFAULT NULL, step_queues text[] DEFAULT NULL, dead_letter_queue text DEFAULT NULL
)
RETURNS TABLE (msg_id bigint, run_id text, enqueued_at timestamptz, place text, message jsonb)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN QUERY EXECUTE orchestrator.ops_runs_window_sql(
        queue_name, state, step_queues, dead_letter_queue)
        USING low, high, payload, lim;
END
$$;

-- Highest msg_id of the queue and its archive (both read from their primary keys): the first
-- page of runs starts above it.
CREATE OR REPLACE FUNCTION orchestrator.ops_last_msg_id(queue_name text)
RETURNS bigint
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    found bigint;
BEGIN
    EXECUTE format('SELECT greatest((SELECT max(msg_id) FROM %s), (SELECT max(msg_id) FROM %s))',
                   pgmq_ext.queue_table(queue_name), pgmq_ext.archive_table(queue_name))
       INTO found;
    RETURN coalesce(found, 0);
END
$$;

-- For each run of `run_ids` that has messages in one of the step queues `queue_names`
-- (pending) or in `dead_letter_queue` (dead): one row per queue with its counts (the caller
-- adds them up). Step queues hold the work in progress (small); the dead-letter queue is
-- searched through its run-id index.
CREATE OR REPLACE FUNCTION orchestrator.ops_run_states(
    queue_names text[], dead_letter_queue text, run_ids text[]
)
RETURNS TABLE (run_id text, pending bigint, dead bigint)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    qname text;
    dead_letters boolean;
BEGIN
    FOREACH qname IN ARRAY array_append(queue_names, dead_letter_queue) LOOP
        CONTINUE WHEN to_regclass('pgmq.' || quote_ident('q_' || lower(qname COLLATE "C"))) IS NULL;
        dead_letters := qname = dead_letter_queue;
        RETURN QUERY EXECUTE format(
            'SELECT headers ->> ''run_id'', CASE WHEN $2 THEN 0 ELSE count(*) END,'
            ' CASE WHEN $2 THEN count(*) ELSE 0 END'
            ' FROM pgmq.%I WHERE headers ->> ''run_id'' = ANY ($1) GROUP BY 1',
            'q_' || lower(qname COLLATE "C")) USING run_ids, dead_letters;
    END LOOP;
END
$$;

-- The statement behind ops_step_activity for queue `queue_name` (parameters: $1 since,
-- $2 bucket seconds).
CREATE OR REPLACE FUNCTION orchestrator.ops_step_activity_sql(queue_name text)
RETURNS text
LANGUAGE sql STABLE
RETURN format(
    'SELECT to_timestamp(floor(extract(epoch FROM archived_at) / $2) * $2), count(*),'
    ' percentile_cont(0.5) WITHIN GROUP (ORDER BY w), percentile_cont(0.95) WITHIN GROUP (ORDER BY w),'
    ' percentile_cont(0.5) WITHIN GROUP (ORDER BY r), percentile_cont(0.95) WITHIN GROUP (ORDER BY r)'
    ' FROM (SELECT archived_at,'
    '   extract(epoch FROM coalesce(last_read_at, archived_at) - enqueued_at)::float8 AS w,'
    '   extract(epoch FROM archived_at - coalesce(last_read_at, archived_at))::float8 AS r'
    '   FROM %s WHERE archived_at >= $1) a'
    ' GROUP BY 1 ORDER BY 1',
    CASE WHEN pgmq_ext.queue_table(queue_name) IS NOT NULL  -- raises for a missing queue
         THEN pgmq_ext.archive_table(queue_name) END);

-- A step's hand-offs since `since`, per bucket of `bucket` seconds: how many, and the p50/p95
-- of enqueue-to-start (sent -> last attempt started) and of handler time (last attempt
-- started -> handed off), in seconds. Reads the archive through its archived_at index.
CREATE OR REPLACE FUNCTION orchestrator.ops_step_activity(
    queue_name text, since timestamptz, bucket integer
)
RETURNS TABLE (
    bucket_start timestamptz, handed_off bigint,
    wait_p50 float8, wait_p95 float8, run_p50 float8, run_p95 float8
)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN QUERY EXECUTE orchestrator.ops_step_activity_sql(queue_name) USING since, bucket;
END
$$;

-- A step's failures since `since`, grouped by error type: the last recorded error of its
-- messages still in the queue (retrying) and the dead letters of the step.
CREATE OR REPLACE FUNCTION orchestrator.ops_step_errors(
    queue_name text, dead_letter_queue text, step text, since timestamptz
)
RETURNS TABLE (error_type text, failures bigint, last_message text, last_at timestamptz)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT coalesce(t, ''?''), count(*), (array_agg(m ORDER BY at DESC))[1], max(at) FROM ('
        '  SELECT headers -> ''errors'' -> -1 ->> ''type'' AS t,'
        '         headers -> ''errors'' -> -1 ->> ''message'' AS m,'
        '         orchestrator.ops_timestamp(headers -> ''errors'' -> -1 ->> ''at'') AS at'
        '    FROM %s WHERE jsonb_typeof(headers -> ''errors'') = ''array'''
        '  UNION ALL'
        '  SELECT message -> ''error'' ->> ''type'', message -> ''error'' ->> ''message'', enqueued_at'
        '    FROM %s WHERE coalesce(message ->> ''step'', headers ->> ''step'') = $1'
        '     AND enqueued_at >= $2'
        ') e WHERE at IS NULL OR at >= $2 GROUP BY 1 ORDER BY 2 DESC, 1',
        pgmq_ext.queue_table(queue_name), pgmq_ext.queue_table(dead_letter_queue))
        USING step, since;
END
$$;
