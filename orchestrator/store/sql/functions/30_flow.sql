-- Flow control (docs/architecture.md, "Flow control"): token buckets, in-flight slots,
-- grouped reads, pause, cancel. Tables in migrations/0004_flow_control.sql.
--
-- Workers announce freed slots, pauses and resumes on channel 'orchestrator_flow' (payload:
-- the slot or bucket name, or '<pipeline>.<step>'), so a waiting worker wakes at once. A
-- cancel announces nothing: it is enforced by run locks (see cancel_run).

-- Tokens in a bucket at `at`: what it held at `updated_at` plus the refill since, at most
-- `burst`. A tiny epsilon absorbs float rounding so a token due at `at` is there.
CREATE OR REPLACE FUNCTION orchestrator.bucket_level(
    tokens double precision, updated_at timestamptz, rate double precision,
    burst double precision, at timestamptz)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN least(burst, tokens + rate * greatest(0, extract(epoch FROM at - updated_at)::float8) + 1e-9);

-- Take up to `wanted` tokens from bucket `name` (created on first use holding one token;
-- `rate` per second and `burst` are refreshed on every call, so a changed YAML takes effect).
-- Returns how many were granted and, when none was, the seconds until the next one is due:
-- the caller sleeps that long instead of asking again. One UPDATE ... RETURNING: the row lock
-- lasts one statement, and a concurrent taker's UPDATE re-reads the row it waited for.
CREATE OR REPLACE FUNCTION orchestrator.take_tokens(
    name text, rate double precision, burst double precision, wanted integer,
    OUT granted integer, OUT wait double precision)
LANGUAGE plpgsql
AS $$
DECLARE
    now_ts timestamptz := clock_timestamp();
    left_over double precision;
BEGIN
    IF NOT (rate > 0 AND burst >= 1 AND wanted >= 1) THEN
        RAISE EXCEPTION 'take_tokens needs rate > 0, burst >= 1 and wanted >= 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR attempt IN 1..2 LOOP
        UPDATE orchestrator.rate_buckets b
           SET taken = least(wanted, floor(orchestrator.bucket_level(
                   b.tokens, b.updated_at, take_tokens.rate, take_tokens.burst, now_ts))),
               tokens = orchestrator.bucket_level(
                   b.tokens, b.updated_at, take_tokens.rate, take_tokens.burst, now_ts)
                   - least(wanted, floor(orchestrator.bucket_level(
                   b.tokens, b.updated_at, take_tokens.rate, take_tokens.burst, now_ts))),
               updated_at = now_ts, rate = take_tokens.rate, burst = take_tokens.burst
         WHERE b.name = take_tokens.name
        RETURNING b.taken, b.tokens INTO granted, left_over;
        EXIT WHEN FOUND;
        INSERT INTO orchestrator.rate_buckets (name, rate, burst, tokens, updated_at)
        VALUES (take_tokens.name, take_tokens.rate, take_tokens.burst, 1, now_ts)
        ON CONFLICT ON CONSTRAINT rate_buckets_pkey DO NOTHING;
    END LOOP;
    wait := CASE WHEN granted > 0 THEN 0 ELSE greatest(0, (1 - left_over) / rate) END;
END
$$;

-- Give back `unused` tokens taken by take_tokens (a read found fewer messages than tokens).
CREATE OR REPLACE FUNCTION orchestrator.give_tokens(name text, unused integer)
RETURNS void
LANGUAGE sql
AS $$
    UPDATE orchestrator.rate_buckets b
       SET tokens = least(b.burst, b.tokens + greatest(unused, 0))
     WHERE b.name = give_tokens.name
$$;

-- Take up to `wanted` free slots of `name` (of `size` in all) for `lease` seconds, as
-- `holder`; returns the slot numbers taken (maybe none). A slot is free when nobody holds
-- it or its holder's lease ran out (a worker that died). Slot rows are made on demand, and
-- slots above `size` (a lowered max_in_flight) are never handed out again.
CREATE OR REPLACE FUNCTION orchestrator.take_slots(
    name text, size integer, wanted integer, holder uuid, lease double precision)
RETURNS integer[]
LANGUAGE plpgsql
AS $$
DECLARE
    now_ts timestamptz := clock_timestamp();
    taken integer[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM orchestrator.flow_slots s
                    WHERE s.name = take_slots.name AND s.slot = size) THEN
        INSERT INTO orchestrator.flow_slots (name, slot)
        SELECT take_slots.name, g FROM generate_series(1, size) AS g
        ON CONFLICT ON CONSTRAINT flow_slots_pkey DO NOTHING;
    END IF;
    WITH free AS (
        SELECT s.slot FROM orchestrator.flow_slots s
         WHERE s.name = take_slots.name AND s.slot <= size
           AND (s.held_by IS NULL OR s.until <= now_ts)
         ORDER BY s.slot
         LIMIT wanted
           FOR UPDATE SKIP LOCKED
    ), held AS (
        UPDATE orchestrator.flow_slots s
           SET held_by = holder, until = now_ts + make_interval(secs => lease)
          FROM free
         WHERE s.name = take_slots.name AND s.slot = free.slot
        RETURNING s.slot
    )
    SELECT coalesce(array_agg(h.slot ORDER BY h.slot), '{}') INTO taken FROM held h;
    RETURN taken;
END
$$;

-- Give back slots taken by `holder` (fenced: a slot whose lease ran out and was taken by
-- someone else is left alone) and wake the workers waiting for one.
CREATE OR REPLACE FUNCTION orchestrator.give_slots(name text, slots integer[], holder uuid)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    freed integer;
BEGIN
    UPDATE orchestrator.flow_slots s SET held_by = NULL, until = NULL
     WHERE s.name = give_slots.name AND s.slot = ANY (slots) AND s.held_by = holder;
    GET DIAGNOSTICS freed = ROW_COUNT;
    IF freed > 0 THEN
        PERFORM pg_notify('orchestrator_flow', name);
    END IF;
    RETURN freed;
END
$$;

-- Slots of `name` held now (leases not run out).
CREATE OR REPLACE FUNCTION orchestrator.slots_held(name text)
RETURNS integer
LANGUAGE sql STABLE
RETURN (SELECT count(*) FROM orchestrator.flow_slots s
         WHERE s.name = slots_held.name AND s.held_by IS NOT NULL AND s.until > clock_timestamp());

-- Visible messages of `queue_name`, counted up to `cap` + 1 (enough to tell "over the cap").
CREATE OR REPLACE FUNCTION orchestrator.visible_depth(queue_name text, cap integer)
RETURNS integer
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    n integer;
BEGIN
    EXECUTE format(
        'SELECT count(*) FROM (SELECT 1 FROM %s q WHERE q.vt <= clock_timestamp() LIMIT $1) AS v',
        pgmq_ext.queue_table(queue_name))
        INTO n USING cap + 1;
    RETURN n;
END
$$;

-- Everything a limited step asks before a read, in one statement (so a step waiting for a
-- slot or a token costs one query per wait): whether `pipeline`.`step` is paused, whether a
-- successor queue (`cap_queues`, with `caps`) holds more visible messages than its cap, then up
-- to `wanted` slots of `slot_name` (of `size`; NULL: no max_in_flight) and as many tokens of
-- `bucket` (NULL: no rate_limit). Slots the tokens do not cover go back at once. Returns
-- `paused`, `full_queue` (the first successor over its cap), the `slots` taken, `granted` (how
-- many messages may be read), and when nothing was granted, `short_of` ('slot' or 'token') and
-- `wait`: the seconds until the next token is due, or until the first held slot's lease runs
-- out (NULL when no slot is held: a concurrent taker has them locked; a freed slot is
-- announced on 'orchestrator_flow' before its lease ends).
CREATE OR REPLACE FUNCTION orchestrator.flow_admit(
    pipeline text, step text, cap_queues text[], caps integer[],
    slot_name text, size integer, wanted integer, holder uuid, lease double precision,
    bucket text, rate double precision, burst double precision,
    OUT paused boolean, OUT full_queue text, OUT slots integer[], OUT granted integer,
    OUT short_of text, OUT wait double precision)
LANGUAGE plpgsql
AS $$
BEGIN
    granted := 0;
    slots := '{}';
    paused := orchestrator.paused_since(pipeline, step) IS NOT NULL;
    IF paused THEN
        RETURN;
    END IF;
    FOR i IN 1..coalesce(cardinality(cap_queues), 0) LOOP
        IF orchestrator.visible_depth(cap_queues[i], caps[i]) > caps[i] THEN
            full_queue := cap_queues[i];
            RETURN;
        END IF;
    END LOOP;
    granted := wanted;
    IF size IS NOT NULL THEN
        slots := orchestrator.take_slots(slot_name, size, wanted, holder, lease);
        granted := cardinality(slots);
        IF granted = 0 THEN
            short_of := 'slot';
            SELECT greatest(0, extract(epoch FROM min(s.until) - clock_timestamp()))::float8
              INTO wait
              FROM orchestrator.flow_slots s
             WHERE s.name = slot_name AND s.slot <= size AND s.held_by IS NOT NULL;
            RETURN;
        END IF;
    END IF;
    IF bucket IS NOT NULL THEN
        SELECT t.granted, t.wait INTO granted, wait
          FROM orchestrator.take_tokens(bucket, rate, burst, granted) AS t;
        IF granted = 0 THEN
            short_of := 'token';
        END IF;
        IF granted < cardinality(slots) THEN
            PERFORM orchestrator.give_slots(slot_name, slots[granted + 1:], holder);
            slots := slots[1:granted];
        END IF;
    END IF;
END
$$;

-- Raise (undefined_object) unless `pipeline` is applied and has step `step` ('' or NULL: the
-- pipeline itself).
CREATE OR REPLACE FUNCTION orchestrator.check_step(pipeline text, step text)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    applied orchestrator.pipelines := orchestrator.applied_pipeline(pipeline);
BEGIN
    IF coalesce(step, '') <> '' AND NOT (applied.spec -> 'steps') ? step THEN
        RAISE EXCEPTION 'pipeline ''%'' has no step ''%''', pipeline, step
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

-- Pause `pipeline`.`step` ('' or NULL: the whole pipeline): workers stop reading it within a
-- second; handlers in flight finish. Returns false when it was paused already.
CREATE OR REPLACE FUNCTION orchestrator.pause(pipeline text, step text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    added integer;
BEGIN
    PERFORM orchestrator.check_step(pipeline, step);
    INSERT INTO orchestrator.paused_steps (pipeline, step)
    VALUES (pause.pipeline, coalesce(pause.step, ''))
    ON CONFLICT ON CONSTRAINT paused_steps_pkey DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    PERFORM pg_notify('orchestrator_flow', pipeline || '.' || coalesce(step, ''));
    RETURN added > 0;
END
$$;

-- Resume what pause() paused; returns false when it was not paused.
CREATE OR REPLACE FUNCTION orchestrator.resume(pipeline text, step text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    removed integer;
BEGIN
    PERFORM orchestrator.check_step(pipeline, step);
    DELETE FROM orchestrator.paused_steps p
     WHERE p.pipeline = resume.pipeline AND p.step = coalesce(resume.step, '');
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM pg_notify('orchestrator_flow', pipeline || '.' || coalesce(step, ''));
    RETURN removed > 0;
END
$$;

-- Since when `pipeline`.`step` is paused (by itself or with its pipeline); NULL when it runs.
CREATE OR REPLACE FUNCTION orchestrator.paused_since(pipeline text, step text)
RETURNS timestamptz
LANGUAGE sql STABLE
RETURN (SELECT min(p.paused_at) FROM orchestrator.paused_steps p
         WHERE p.pipeline = paused_since.pipeline AND p.step IN (paused_since.step, ''));

-- The advisory lock of run `run_id`: claims (for the whole batch) and hand-offs of the run
-- hold it shared, cancel exclusively, so a cancel waits for a batch in flight, and a claim or
-- hand-off that comes later sees the cancel. Two runs whose keys collide (a 64-bit hash)
-- only wait for each other's cancels; whether a run is cancelled is always looked up by id.
CREATE OR REPLACE FUNCTION orchestrator.run_lock_key(run_id uuid)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN hashtextextended('orchestrator run ' || run_id::text, 0);

-- The runs among `run_ids` that are cancelled, after taking their locks (shared, in key
-- order, so a cancel of several runs, which locks in the same order, cannot deadlock with a
-- hand-off). Empty when none is, the common case: one index probe.
CREATE OR REPLACE FUNCTION orchestrator.cancelled_among(run_ids uuid[])
RETURNS uuid[]
LANGUAGE plpgsql
AS $$
DECLARE
    found uuid[];
BEGIN
    PERFORM pg_advisory_xact_lock_shared(l.k)
       FROM (SELECT DISTINCT orchestrator.run_lock_key(r) AS k FROM unnest(run_ids) AS r) AS l
      ORDER BY l.k;
    SELECT array_agg(c.run_id) INTO found
      FROM orchestrator.cancelled_runs c WHERE c.run_id = ANY (run_ids);
    RETURN coalesce(found, '{}');
END
$$;

-- Where run `run_id` of the applied pipeline `applied` stands: `active` when one of its
-- messages is still in a step queue (waiting, delayed, retrying or in flight), and `last_at`,
-- the latest time one of its messages was archived or dead-lettered (NULL: none was).
CREATE OR REPLACE FUNCTION orchestrator.run_state(
    applied orchestrator.pipelines, run_id uuid, OUT active boolean, OUT last_at timestamptz)
LANGUAGE plpgsql
AS $$
DECLARE
    dlq text := lower(applied.spec ->> 'dead_letter_queue' COLLATE "C");
BEGIN
    SELECT coalesce(bool_or(m.place = 'queue' AND m.queue_name <> dlq), false),
           max(coalesce(m.archived_at, m.enqueued_at))
             FILTER (WHERE m.place = 'archive' OR m.queue_name = dlq)
      INTO active, last_at
      FROM orchestrator.ops_run_messages(
               ARRAY(SELECT orchestrator.step_queue(applied.name, s)
                       FROM jsonb_object_keys(applied.spec -> 'steps') AS s) || dlq,
               run_id::text) AS m;
END
$$;

-- Cancel run `run_id`: delete its messages waiting, delayed or retrying in the step queues of
-- its pipeline and record the cancel. It first takes the run's advisory lock exclusively, so
-- it waits for the batches that claimed a message of the run (their handlers started before
-- it commits; what their hand-offs sent, joins included, it deletes), and a claim that comes
-- later waits for it and then finds the run cancelled (see orchestrator.claim): no handler of
-- the run starts after the cancel committed. The wait lasts at most `wait_seconds` (its
-- lock_timeout; then the caller gets SQLSTATE 55P03 and nothing changed). `outcome`: 'cancelled' (`removed` messages
-- deleted, `in_flight` read by a worker that has not claimed them yet: its claim deletes
-- them), 'already cancelled', 'finished' (nothing left to cancel; nothing changed) or
-- 'unknown'. Scans the step queues of the applied pipelines (short queues; their archives
-- are indexed by run id).
CREATE OR REPLACE FUNCTION orchestrator.cancel_run(
    run_id uuid, by_whom text, wait_seconds double precision,
    OUT outcome text, OUT pipeline text, OUT removed integer, OUT in_flight integer)
LANGUAGE plpgsql
SET lock_timeout = '30s'  -- the function's own: the set_config below ends with it
AS $$
DECLARE
    applied orchestrator.pipelines;
    queue text;
    n integer;
    held integer;
BEGIN
    removed := 0;
    in_flight := 0;
    PERFORM set_config('lock_timeout', greatest(1, ceil(wait_seconds * 1000))::bigint || 'ms', true);
    PERFORM pg_advisory_xact_lock(orchestrator.run_lock_key(run_id));
    SELECT c.pipeline INTO pipeline FROM orchestrator.cancelled_runs c
     WHERE c.run_id = cancel_run.run_id;
    IF FOUND THEN
        outcome := 'already cancelled';
        RETURN;
    END IF;
    FOR applied IN SELECT * FROM orchestrator.pipelines a ORDER BY a.name LOOP
        FOR queue IN SELECT orchestrator.step_queue(applied.name, s)
                       FROM jsonb_object_keys(applied.spec -> 'steps') AS s LOOP
            EXECUTE format(
                'WITH gone AS (DELETE FROM %1$s q WHERE q.msg_id = ANY (ARRAY('
                ' SELECT m.msg_id FROM %1$s m WHERE m.headers ->> ''run_id'' = $1'
                ' FOR UPDATE SKIP LOCKED)) RETURNING 1)'
                ' SELECT (SELECT count(*) FROM gone),'
                ' (SELECT count(*) FROM %1$s m WHERE m.headers ->> ''run_id'' = $1)',
                pgmq_ext.queue_table(queue))
                INTO n, held USING run_id::text;
            IF n + held > 0 THEN
                pipeline := applied.name;
                removed := removed + n;
                in_flight := in_flight + held - n;  -- held counted before the delete
            END IF;
        END LOOP;
        EXIT WHEN pipeline IS NOT NULL;
        IF (orchestrator.run_state(applied, run_id)).last_at IS NOT NULL THEN
            pipeline := applied.name;
            outcome := 'finished';
            RETURN;
        END IF;
    END LOOP;
    IF pipeline IS NULL THEN
        outcome := 'unknown';
        RETURN;
    END IF;
    INSERT INTO orchestrator.cancelled_runs (run_id, pipeline, cancelled_at, cancelled_by, removed)
    VALUES (run_id, pipeline, clock_timestamp(), coalesce(by_whom, session_user), removed);
    outcome := 'cancelled';
END
$$;
