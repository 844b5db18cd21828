-- Starting runs, and the headers every step message carries (docs/architecture.md, "Messages").
--
-- Headers of a step message:
--   {"run_id", "pipeline", "step", "parent_id", "parent_step", "traceparent", "sent_at",
--    "spec_hash"}
-- `spec_hash` is the hash of the pipeline version the message was sent under: the applied one
-- when a run starts, the sending worker's afterwards (see hand_off).
-- The run id is the trace id of the W3C traceparent (one trace per run); each message is a
-- span with a random span id. Keys a caller adds when starting a run (a tenant, a correlation
-- id) travel with the run to every later step; `errors` (attempt history) and `dead_letter`
-- stay with the message they describe.

-- W3C traceparent of a new span in the trace of run `run_id`:
-- 00-<run id as 32 hex digits>-<16 hex digits>-01. Span ids only need to differ, not to be
-- secret: random() (about 50 random bits, never all zero) costs a fraction of a strong random
-- UUID, and a batch computes one per message.
CREATE OR REPLACE FUNCTION orchestrator.traceparent(run_id uuid)
RETURNS text
LANGUAGE sql VOLATILE PARALLEL SAFE
RETURN '00-' || replace(run_id::text, '-', '') || '-'
    || lpad(to_hex((random() * 4611686018427387904)::bigint | 1), 16, '0') || '-01';

-- What the messages a hand-off sends to `step` have in common: pipeline, step, parent step
-- and the time they were sent. Built once per batch and route, not once per message.
CREATE OR REPLACE FUNCTION orchestrator.header_base(
    pipeline text, step text, parent_step text, sent_at timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
RETURN jsonb_build_object(
    'pipeline', pipeline, 'step', step, 'parent_step', parent_step, 'sent_at', sent_at);

-- Headers of a message of run `run_id` sent by the hand-off of message `parent_id` (NULL
-- when a run starts): `base` (see header_base) with the run, the parent and a new span, plus
-- the keys of `inherited` (the parent's headers, or the caller's when a run starts) that are
-- not the runtime's own. Simple enough for PostgreSQL to inline into the caller's query.
CREATE OR REPLACE FUNCTION orchestrator.step_headers(
    inherited jsonb, base jsonb, run_id uuid, parent_id bigint)
RETURNS jsonb
LANGUAGE sql VOLATILE PARALLEL SAFE
RETURN CASE WHEN jsonb_typeof(inherited) = 'object'
            THEN inherited - '{run_id,pipeline,step,parent_id,parent_step,traceparent,sent_at,errors,dead_letter,isolated}'::text[]
            ELSE '{}'::jsonb END
    || base
    || jsonb_build_object(
        'run_id', run_id, 'parent_id', parent_id, 'traceparent', orchestrator.traceparent(run_id));

-- The applied pipeline `name`, or an error telling the user to apply it (SQLSTATE 42704,
-- undefined_object).
CREATE OR REPLACE FUNCTION orchestrator.applied_pipeline(name text)
RETURNS orchestrator.pipelines
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    found_row orchestrator.pipelines;
BEGIN
    SELECT * INTO found_row FROM orchestrator.pipelines p WHERE p.name = applied_pipeline.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline ''%'' is not applied; run orchestrator apply', name
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN found_row;
END
$$;

-- Start one run per payload of pipeline `pipeline`: each payload (a JSON object) becomes a
-- message of the entry step's queue, with a new run id. Returns the run ids in the order of
-- `payloads`. `headers` (NULL, or one object or NULL per payload) adds keys of the caller's
-- to the messages (ours win over theirs). `delay` (seconds) overrides the entry step's delay.
-- Runs inside the caller's transaction: they start when it commits, or never.
CREATE OR REPLACE FUNCTION orchestrator.start_runs(
    pipeline text,
    payloads jsonb[],
    headers jsonb[] DEFAULT NULL,
    delay double precision DEFAULT NULL
)
RETURNS SETOF uuid
LANGUAGE plpgsql
AS $$
DECLARE
    applied orchestrator.pipelines := orchestrator.applied_pipeline(pipeline);
    entry text := applied.entry_step;
    n integer := coalesce(cardinality(payloads), 0);
    run_ids uuid[];
    now_ts timestamptz := clock_timestamp();
    bad integer;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    IF headers IS NOT NULL AND cardinality(headers) <> n THEN
        RAISE EXCEPTION 'start_runs got % payloads but % headers; pass one per payload',
            n, cardinality(headers)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT i INTO bad FROM unnest(payloads) WITH ORDINALITY AS p (payload, i)
     WHERE p.payload IS NULL OR jsonb_typeof(p.payload) <> 'object' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'payload % of % is %, not a JSON object', bad, n,
            coalesce(jsonb_typeof(payloads[bad]), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF delay IS NOT NULL AND NOT (delay >= 0 AND delay < 'Infinity'::float8) THEN
        RAISE EXCEPTION 'delay must be a number of seconds >= 0, got %', delay
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    run_ids := ARRAY(SELECT gen_random_uuid() FROM generate_series(1, n));
    PERFORM pgmq.send_batch(
        orchestrator.step_queue(applied.name, entry),
        payloads,
        ARRAY(SELECT orchestrator.step_headers(
                         headers[i],
                         orchestrator.header_base(applied.name, entry, NULL, now_ts)
                             || jsonb_build_object('spec_hash', applied.spec_hash),
                         run_ids[i], NULL)
                FROM generate_series(1, n) AS i),
        now_ts + make_interval(secs => coalesce(
            delay, (applied.spec #>> ARRAY['steps', entry, 'delay'])::float8, 0)));
    RETURN QUERY SELECT unnest(run_ids);
END
$$;

-- The input contract of the entry step of applied pipeline `name` as JSON text (NULL when it
-- declares none, no row when the pipeline is not applied), for start() to check payloads
-- before start_runs enqueues them.
CREATE OR REPLACE FUNCTION orchestrator.entry_contract(name text)
RETURNS TABLE (contract text, entry_step text)
LANGUAGE sql STABLE
AS $$
    SELECT (p.spec #> ARRAY['steps', p.entry_step, 'input'])::text, p.entry_step
      FROM orchestrator.pipelines p
     WHERE p.name = entry_contract.name
$$;
