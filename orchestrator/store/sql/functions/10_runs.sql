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
            THEN inherited - '{run_id,pipeline,step,parent_id,parent_step,traceparent,sent_at,errors,dead_letter,isolated,isolated_streak}'::text[]
            ELSE '{}'::jsonb END
    || base
    || jsonb_build_object(
        'run_id', run_id, 'parent_id', parent_id, 'traceparent', orchestrator.traceparent(run_id));

-- `headers` of a message with `payload` sent to a step whose group_by is `group_path`: with
-- the queue layer's FIFO group header (x-pgmq-group) set to the payload's value at the path
-- (see pgmq.read_grouped_head), or without it when the step has no group_by (a parent's
-- group never travels on) or the payload lacks the key (then the queue layer's default group).
CREATE OR REPLACE FUNCTION orchestrator.grouped(headers jsonb, payload jsonb, group_path text[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN group_path IS NULL OR payload #>> group_path IS NULL
            THEN headers - 'x-pgmq-group'
            ELSE headers || jsonb_build_object('x-pgmq-group', payload #>> group_path) END;

-- `text` as a uuid when it is one in canonical form (as run ids are written), else NULL.
CREATE OR REPLACE FUNCTION orchestrator.uuid_or_null(text text)
RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN text ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
            THEN text::uuid END;

-- The group_by key path of step `step` in the applied `spec` (NULL: the step has none).
CREATE OR REPLACE FUNCTION orchestrator.group_path(spec jsonb, step text)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN string_to_array(spec #>> ARRAY['steps', step, 'group_by'], '.');

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

-- Raise unless the arguments of a start are usable: `payloads` JSON objects, `headers` NULL
-- or one per payload, `delay` NULL or seconds >= 0.
CREATE OR REPLACE FUNCTION orchestrator.check_start(
    payloads jsonb[], headers jsonb[], delay double precision)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    n integer := coalesce(cardinality(payloads), 0);
    bad integer;
BEGIN
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
END
$$;

-- Send the first messages of runs `run_ids` (one per payload) to the entry step of `applied`.
CREATE OR REPLACE FUNCTION orchestrator.enqueue_runs(
    applied orchestrator.pipelines, payloads jsonb[], headers jsonb[], delay double precision,
    run_ids uuid[])
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    entry text := applied.entry_step;
    now_ts timestamptz := clock_timestamp();
BEGIN
    IF coalesce(cardinality(payloads), 0) = 0 THEN
        RETURN;
    END IF;
    PERFORM pgmq.send_batch(
        orchestrator.step_queue(applied.name, entry),
        payloads,
        ARRAY(SELECT orchestrator.grouped(
                         orchestrator.step_headers(
                             headers[i],
                             orchestrator.header_base(applied.name, entry, NULL, now_ts)
                                 || jsonb_build_object('spec_hash', applied.spec_hash),
                             run_ids[i], NULL),
                         payloads[i], orchestrator.group_path(applied.spec, entry))
                FROM generate_series(1, cardinality(payloads)) AS i),
        now_ts + make_interval(secs => coalesce(
            delay, (applied.spec #>> ARRAY['steps', entry, 'delay'])::float8, 0)));
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
    n integer := coalesce(cardinality(payloads), 0);
    run_ids uuid[];
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    PERFORM orchestrator.check_start(payloads, headers, delay);
    run_ids := ARRAY(SELECT gen_random_uuid() FROM generate_series(1, n));
    PERFORM orchestrator.enqueue_runs(applied, payloads, headers, delay, run_ids);
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

-- start_runs with a deduplication key per payload (NULL: no key). While the run holding a key
-- is not finished (a message of it is still in a step queue), or finished less than the
-- pipeline's dedupe_window ago, a start with the same key returns that run's id with
-- `duplicate` true and sends nothing. Two starts racing in two transactions serialise on the
-- unique (pipeline, key) of orchestrator.runs: the second waits for the first to commit and
-- then sees its run. The same key twice in one call starts one run.
CREATE OR REPLACE FUNCTION orchestrator.start_keyed_runs(
    pipeline text,
    payloads jsonb[],
    headers jsonb[],
    delay double precision,
    keys text[]
)
RETURNS TABLE (run_id uuid, duplicate boolean)
LANGUAGE plpgsql
AS $$
DECLARE
    applied orchestrator.pipelines := orchestrator.applied_pipeline(pipeline);
    n integer := coalesce(cardinality(payloads), 0);
    window_s double precision := coalesce((applied.spec ->> 'dedupe_window')::float8, 0);
    ids uuid[] := '{}';
    dups boolean[] := '{}';
    fresh integer[] := '{}';
    id uuid;
    held record;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    PERFORM orchestrator.check_start(payloads, headers, delay);
    IF keys IS NULL OR cardinality(keys) <> n THEN
        RAISE EXCEPTION 'start_keyed_runs got % payloads but % keys; pass one per payload (NULL for none)',
            n, coalesce(cardinality(keys), 0)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 1..n LOOP
        id := gen_random_uuid();
        IF keys[i] IS NULL THEN
            ids := ids || id; dups := dups || false; fresh := fresh || i;
            CONTINUE;
        END IF;
        IF keys[i] = ANY (keys[1:i - 1]) THEN  -- the same key earlier in this call
            ids := ids || ids[array_position(keys, keys[i])]; dups := dups || true;
            CONTINUE;
        END IF;
        INSERT INTO orchestrator.runs AS r (pipeline, key, run_id)
        VALUES (applied.name, keys[i], id)
        ON CONFLICT ON CONSTRAINT runs_pkey DO NOTHING;
        IF NOT FOUND THEN
            SELECT r.run_id, r.started_at INTO held FROM orchestrator.runs r
             WHERE r.pipeline = applied.name AND r.key = keys[i] FOR UPDATE;
            IF orchestrator.run_holds_key(applied, held.run_id, held.started_at, window_s) THEN
                ids := ids || held.run_id; dups := dups || true;
                CONTINUE;
            END IF;
            UPDATE orchestrator.runs r SET run_id = id, started_at = clock_timestamp()
             WHERE r.pipeline = applied.name AND r.key = keys[i];
        END IF;
        ids := ids || id; dups := dups || false; fresh := fresh || i;
    END LOOP;
    PERFORM orchestrator.enqueue_runs(
        applied,
        ARRAY(SELECT payloads[i] FROM unnest(fresh) AS i),
        CASE WHEN headers IS NULL THEN NULL ELSE ARRAY(SELECT headers[i] FROM unnest(fresh) AS i) END,
        delay,
        ARRAY(SELECT ids[i] FROM unnest(fresh) AS i));
    RETURN QUERY SELECT u.id, u.dup FROM unnest(ids, dups) AS u (id, dup);
END
$$;

-- True while run `run_id` (started at `started_at`) still holds its key: not finished, or
-- finished less than `window_s` seconds ago (the end of a run whose messages are deleted
-- rather than archived is unknown; its start counts instead). A cancelled run has finished.
CREATE OR REPLACE FUNCTION orchestrator.run_holds_key(
    applied orchestrator.pipelines, run_id uuid, started_at timestamptz, window_s double precision)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    state record;
BEGIN
    SELECT * INTO state FROM orchestrator.run_state(applied, run_id);
    IF state.active AND NOT EXISTS (
            SELECT 1 FROM orchestrator.cancelled_runs c WHERE c.run_id = run_holds_key.run_id) THEN
        RETURN true;
    END IF;
    RETURN window_s > 0
       AND coalesce(state.last_at, started_at) + make_interval(secs => window_s) > clock_timestamp();
END
$$;
