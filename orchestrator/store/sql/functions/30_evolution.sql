-- Pipelines that change while runs are in flight (docs/architecture.md, "Pipeline evolution").

-- Move everything of step `old_step` of `pipeline` to step `new_step` (a rename in the pipeline
-- file, `renamed_from`), inside apply's transaction, after the new step's queue was created
-- and before the old one is dropped:
-- * waiting and in-flight messages of the old queue, with their msg_id, read_ct, vt and
--   attempt history (headers.step becomes the new name);
-- * the old queue's archive, with its msg_ids (the new queue's msg_id sequence is moved past
--   them, so ids stay unique and parent_id links of later messages stay valid);
-- * dead letters of the old step in `dead_letter_queue` (replay then targets the new queue);
-- * join rows: of the step itself when it is a join, and as an arrived/expected predecessor;
-- * a pause of the old step (`orchestrator pause`): the renamed step stays paused.
-- Returns what was moved.
CREATE OR REPLACE FUNCTION orchestrator.move_step(
    pipeline text, old_step text, new_step text, dead_letter_queue text,
    OUT waiting bigint, OUT archived bigint, OUT dead_letters bigint, OUT join_rows bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    old_queue text := orchestrator.step_queue(pipeline, old_step);
    new_queue text := orchestrator.step_queue(pipeline, new_step);
    renamed jsonb := jsonb_build_object('step', new_step);
    top bigint;
    more bigint;
BEGIN
    EXECUTE format('SELECT greatest((SELECT max(msg_id) FROM %s), (SELECT max(msg_id) FROM %s))',
                   pgmq_ext.queue_table(old_queue), pgmq_ext.archive_table(old_queue))
        INTO top;
    IF top IS NOT NULL THEN
        PERFORM setval(pg_get_serial_sequence(pgmq_ext.queue_table(new_queue), 'msg_id'), top);
    END IF;
    EXECUTE format(
        'WITH gone AS (DELETE FROM %s RETURNING *)'
        ' INSERT INTO %s (msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers)'
        ' OVERRIDING SYSTEM VALUE'
        ' SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers || $1'
        '   FROM gone ORDER BY msg_id',
        pgmq_ext.queue_table(old_queue), pgmq_ext.queue_table(new_queue))
        USING renamed;
    GET DIAGNOSTICS waiting = ROW_COUNT;
    EXECUTE format(
        'WITH gone AS (DELETE FROM %s RETURNING *)'
        ' INSERT INTO %s (msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers, archived_at)'
        ' SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers || $1, archived_at'
        '   FROM gone',
        pgmq_ext.archive_table(old_queue), pgmq_ext.archive_table(new_queue))
        USING renamed;
    GET DIAGNOSTICS archived = ROW_COUNT;
    dead_letters := 0;
    IF to_regclass('pgmq.' || quote_ident('q_' || lower(dead_letter_queue COLLATE "C"))) IS NOT NULL THEN
        EXECUTE format(
            'UPDATE %s SET message = message || jsonb_build_object(''step'', $2::text, ''queue'', $3::text)'
            '   || CASE WHEN jsonb_typeof(message -> ''headers'') = ''object'''
            '           THEN jsonb_build_object(''headers'', (message -> ''headers'') || $4) ELSE ''{}'' END,'
            '   headers = headers || $4'
            ' WHERE message ->> ''pipeline'' = $1 AND message ->> ''step'' = $5',
            pgmq_ext.queue_table(dead_letter_queue))
            USING pipeline, new_step, new_queue, renamed, old_step;
        GET DIAGNOSTICS dead_letters = ROW_COUNT;
    END IF;
    UPDATE orchestrator.joins j SET step = new_step
     WHERE j.pipeline = move_step.pipeline AND j.step = old_step;
    GET DIAGNOSTICS join_rows = ROW_COUNT;
    UPDATE orchestrator.joins j
       SET expected = array_replace(j.expected, old_step, new_step),
           arrived = CASE WHEN j.arrived ? old_step
                          THEN (j.arrived - old_step) || jsonb_build_object(new_step, j.arrived -> old_step)
                          ELSE j.arrived END
     WHERE j.pipeline = move_step.pipeline AND old_step = ANY (j.expected);
    GET DIAGNOSTICS more = ROW_COUNT;
    join_rows := join_rows + more;
    INSERT INTO orchestrator.paused_steps (pipeline, step, paused_at, paused_by)
    SELECT p.pipeline, new_step, p.paused_at, p.paused_by
      FROM orchestrator.paused_steps p
     WHERE p.pipeline = move_step.pipeline AND p.step = old_step
    ON CONFLICT ON CONSTRAINT paused_steps_pkey DO NOTHING;
    DELETE FROM orchestrator.paused_steps p
     WHERE p.pipeline = move_step.pipeline AND p.step = old_step;
END
$$;

-- Move every message of the queue of step `step` (removed from `pipeline` by apply with
-- --to-dead-letter) to `dead_letter_queue`, as dead letters whose error is StepRemoved: the
-- body of a dead letter (docs/architecture.md, "Messages"), so `dlq replay` sends them back
-- once the step exists again. Returns how many were moved.
CREATE OR REPLACE FUNCTION orchestrator.dead_letter_step(
    pipeline text, step text, dead_letter_queue text)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    queue text := orchestrator.step_queue(pipeline, step);
    now_ts timestamptz := clock_timestamp();
    bodies jsonb[];
BEGIN
    EXECUTE format(
        'WITH gone AS (DELETE FROM %s RETURNING *)'
        ' SELECT array_agg(jsonb_build_object('
        '     ''pipeline'', $1::text, ''step'', $2::text, ''queue'', $3::text,'
        '     ''run_id'', headers -> ''run_id'', ''msg_id'', msg_id, ''payload'', message,'
        '     ''headers'', coalesce(headers, ''{}'') - ''errors'', ''attempts'', read_ct,'
        '     ''failed_at'', $4::timestamptz, ''permanent'', true,'
        '     ''error'', jsonb_build_object(''type'', ''StepRemoved'', ''message'','
        '         format(''step %%s was removed from pipeline %%s by apply --to-dead-letter; '
        'replay the message once the step exists again'', $2, $1), ''traceback'', NULL))'
        '     ORDER BY msg_id)'
        '   FROM gone',
        pgmq_ext.queue_table(queue))
        INTO bodies
        USING pipeline, step, queue, now_ts;
    IF bodies IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM pgmq.send_batch(
        dead_letter_queue,
        bodies,
        ARRAY(SELECT jsonb_build_object('run_id', b -> 'run_id', 'pipeline', pipeline,
                                        'step', step, 'dead_letter', true)
                FROM unnest(bodies) AS b));
    RETURN cardinality(bodies);
END
$$;
