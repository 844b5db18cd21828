-- Topics: a step with `publish` keys also publishes its outputs with each key, inside the
-- hand-off's transaction, so an attempt that is retried, lost or rolled back publishes
-- nothing, and one that hands off publishes exactly once (docs/architecture.md, "Topics").

-- Publish `outputs` (one per message `msg_ids[i]` of run `run_ids[i]`, handed off by
-- `pipeline`.`step`) with every routing key of `keys`; returns how many messages were sent.
-- A key reaches every distinct queue bound by a matching pattern (pgmq.test_routing, as
-- pgmq.send_batch_topic routes; an invalid key raises its error). A queue that is the entry
-- queue of an applied pipeline (a pipeline's `subscribe`) gets new runs of that pipeline, as
-- start_runs starts them: run headers, its spec hash, its entry step's group_by and delay.
-- Any other bound queue gets the outputs as they are. Either way each message's headers say
-- where it came from: {"published": {"topic", "pipeline", "step", "run_id", "msg_id"}}, which
-- a subscriber's run keeps at every step (not a key of the runtime's own).
CREATE OR REPLACE FUNCTION orchestrator.publish(
    pipeline text, step text, keys text[], msg_ids bigint[], run_ids uuid[], outputs jsonb[])
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    n integer := coalesce(cardinality(msg_ids), 0);
    now_ts timestamptz := clock_timestamp();
    key text;
    target text;
    subscriber orchestrator.pipelines;
    origins jsonb[];
    sent integer := 0;
BEGIN
    IF n = 0 THEN
        RETURN 0;
    END IF;
    FOREACH key IN ARRAY keys LOOP
        origins := ARRAY(
            SELECT jsonb_build_object('published', jsonb_build_object(
                       'topic', key, 'pipeline', pipeline, 'step', step,
                       'run_id', p.run_id, 'msg_id', p.id))
              FROM unnest(msg_ids, run_ids) WITH ORDINALITY AS p (id, run_id, i)
             ORDER BY p.i);
        FOR target IN SELECT DISTINCT r.queue_name FROM pgmq.test_routing(key) AS r ORDER BY 1 LOOP
            subscriber := NULL;
            -- Pipeline names hold no '__': the part before it names the only candidate.
            SELECT * INTO subscriber FROM orchestrator.pipelines p
             WHERE p.name = split_part(target, '__', 1)
               AND orchestrator.step_queue(p.name, p.entry_step) = target;
            IF subscriber.name IS NULL THEN
                PERFORM pgmq.send_batch(target, outputs, origins, now_ts);
            ELSE
                PERFORM orchestrator.enqueue_runs(
                    subscriber, outputs, origins, NULL,
                    ARRAY(SELECT gen_random_uuid() FROM generate_series(1, n)));
            END IF;
            sent := sent + n;
        END LOOP;
    END LOOP;
    RETURN sent;
END
$$;
