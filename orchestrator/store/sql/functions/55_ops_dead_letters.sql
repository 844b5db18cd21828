-- Dead-letter queues (package orchestrator.ops): list, count, replay and purge.
--
-- A dead letter is a message of a pipeline's dead-letter queue whose body is
-- {"pipeline", "step", "queue", "run_id", "msg_id", "payload", "headers", "attempts",
--  "failed_at", "permanent", "error": {"type", "message", "traceback"}}.
-- Every function selects dead letters with the same filter (see ops_dead_letter_filter);
-- arguments left NULL do not filter.

-- The WHERE clause shared by the functions below. Parameters: $1 step, $2 text contained in
-- the error's type or message (case-insensitive), $3 entered the queue at or after, $4 entered
-- before, $5 msg_ids, $6 msg_id greater than (keyset paging).
CREATE OR REPLACE FUNCTION orchestrator.ops_dead_letter_filter()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '($1::text IS NULL OR coalesce(message ->> ''step'', headers ->> ''step'') = $1)'
    || ' AND ($2::text IS NULL OR strpos(lower(coalesce(message -> ''error'' ->> ''type'', '''')'
    || ' || '': '' || coalesce(message -> ''error'' ->> ''message'', '''')), lower($2)) > 0)'
    || ' AND ($3::timestamptz IS NULL OR enqueued_at >= $3)'
    || ' AND ($4::timestamptz IS NULL OR enqueued_at < $4)'
    || ' AND ($5::bigint[] IS NULL OR msg_id = ANY ($5))'
    || ' AND ($6::bigint IS NULL OR msg_id > $6)';

-- Dead letters matching the filter, newest first, at most `lim`. Read in windows of msg_id
-- from the newest down (each through the primary key, the next one twice as wide) until `lim`
-- are found: a filter that matches often reads a few pages, not the whole queue (the planner
-- knows nothing of how often a step or an error matches, and would scan and sort everything
-- for an ORDER BY msg_id DESC LIMIT); one that never matches reads the queue once.
CREATE OR REPLACE FUNCTION orchestrator.ops_dead_letters(
    queue_name text,
    only_step text DEFAULT NULL,
    error_text text DEFAULT NULL,
    since timestamptz DEFAULT NULL,
    before timestamptz DEFAULT NULL,
    ids bigint[] DEFAULT NULL,
    lim integer DEFAULT 100
)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
DECLARE
    tbl text := pgmq_ext.queue_table(queue_name);
    statement text;
    lowest bigint;
    high bigint;
    low bigint;
    wanted bigint := coalesce(lim, 9223372036854775807);  -- NULL: no limit, as LIMIT NULL
    width bigint := greatest(lim, 1) * 4;
    found bigint := 0;
    got bigint;
BEGIN
    EXECUTE format('SELECT min(msg_id), max(msg_id) + 1 FROM %s', tbl) INTO lowest, high;
    IF ids IS NOT NULL THEN  -- only the ids' range
        lowest := greatest(lowest, (SELECT min(i) FROM unnest(ids) AS i));
        high := least(high, (SELECT max(i) + 1 FROM unnest(ids) AS i));
    END IF;
    IF lim IS NULL THEN  -- everything: one window
        width := greatest(high - lowest, 1);
    END IF;
    statement := format(
        'SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM %s'
        ' WHERE msg_id >= $8 AND msg_id < $9 AND %s ORDER BY msg_id DESC LIMIT $7',
        tbl, orchestrator.ops_dead_letter_filter());
    WHILE high > lowest AND found < wanted LOOP
        low := greatest(lowest, high - width);
        RETURN QUERY EXECUTE statement
            USING only_step, error_text, since, before, ids, NULL::bigint, wanted - found, low,
                  high;
        GET DIAGNOSTICS got = ROW_COUNT;
        found := found + got;
        high := low;
        width := least(width * 2, 1::bigint << 40);
    END LOOP;
END
$$;

-- How many dead letters match the filter.
CREATE OR REPLACE FUNCTION orchestrator.ops_count_dead_letters(
    queue_name text,
    only_step text DEFAULT NULL,
    error_text text DEFAULT NULL,
    since timestamptz DEFAULT NULL,
    before timestamptz DEFAULT NULL,
    ids bigint[] DEFAULT NULL
)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    found bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM %s WHERE %s',
        pgmq_ext.queue_table(queue_name), orchestrator.ops_dead_letter_filter())
        INTO found
        USING only_step, error_text, since, before, ids, NULL::bigint;
    RETURN found;
END
$$;

-- Replay up to `lim` dead letters of `pipeline` (oldest first, msg_id > after_id): each goes
-- back to the queue of the step it failed in as a new message (attempts start again at zero)
-- with its original payload and headers, minus the recorded errors, plus `replayed_from` (the
-- dead letter's msg_id), and the dead letter is deleted, all in the caller's transaction.
-- Rows are taken FOR UPDATE SKIP LOCKED, so two replays at once never send a dead letter
-- twice, and a replay repeated after a commit finds nothing left to send.
-- Outcome per dead letter: 'replayed' (new_msg_id set), or left in place with 'no step'
-- (the body names none), 'unknown step' (the step's queue does not exist any more) or
-- 'no payload'.
CREATE OR REPLACE FUNCTION orchestrator.ops_replay_dead_letters(
    queue_name text,
    pipeline text,
    only_step text DEFAULT NULL,
    error_text text DEFAULT NULL,
    ids bigint[] DEFAULT NULL,
    after_id bigint DEFAULT NULL,
    lim integer DEFAULT 500
)
RETURNS TABLE (dead_letter_id bigint, step_name text, outcome text, new_msg_id bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    dlq text := pgmq_ext.queue_table(queue_name);
    dead record;
    target text;
    replay_headers jsonb;
BEGIN
    FOR dead IN EXECUTE format(
        'SELECT msg_id, message, headers FROM %s WHERE %s ORDER BY msg_id LIMIT $7'
        ' FOR UPDATE SKIP LOCKED',
        dlq, orchestrator.ops_dead_letter_filter())
        USING only_step, error_text, NULL::timestamptz, NULL::timestamptz, ids, after_id, lim
    LOOP
        dead_letter_id := dead.msg_id;
        step_name := coalesce(dead.message ->> 'step', dead.headers ->> 'step');
        new_msg_id := NULL;
        target := orchestrator.step_queue(pipeline, step_name);
        IF step_name IS NULL THEN
            outcome := 'no step';
        ELSIF to_regclass('pgmq.' || quote_ident('q_' || lower(target COLLATE "C"))) IS NULL THEN
            outcome := 'unknown step';
        ELSIF NOT coalesce(jsonb_typeof(dead.message) = 'object' AND dead.message ? 'payload', false) THEN
            outcome := 'no payload';
        ELSE
            replay_headers :=
                jsonb_build_object('run_id', coalesce(dead.message ->> 'run_id', dead.headers ->> 'run_id'),
                                   'pipeline', pipeline,
                                   'step', step_name)
                || CASE WHEN jsonb_typeof(dead.message -> 'headers') = 'object'
                        THEN (dead.message -> 'headers') - 'errors'
                        ELSE '{}'::jsonb END
                || jsonb_build_object('replayed_from', dead.msg_id);
            SELECT s INTO new_msg_id FROM pgmq.send(target, dead.message -> 'payload', replay_headers) s;
            EXECUTE format('DELETE FROM %s WHERE msg_id = $1', dlq) USING dead.msg_id;
            outcome := 'replayed';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Delete up to `lim` dead letters matching the filter (locked ones are skipped: a replay is
-- taking them); returns how many were deleted.
CREATE OR REPLACE FUNCTION orchestrator.ops_purge_dead_letters(
    queue_name text,
    only_step text DEFAULT NULL,
    before timestamptz DEFAULT NULL,
    lim integer DEFAULT 5000
)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    dlq text := pgmq_ext.queue_table(queue_name);
    deleted bigint;
BEGIN
    EXECUTE format(
        'DELETE FROM %1$s WHERE msg_id = ANY (ARRAY('
        'SELECT msg_id FROM %1$s WHERE %2$s ORDER BY msg_id LIMIT $7 FOR UPDATE SKIP LOCKED))',
        dlq, orchestrator.ops_dead_letter_filter())
        USING only_step, NULL::text, NULL::timestamptz, before, NULL::bigint[], NULL::bigint, lim;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;
