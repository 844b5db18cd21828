-- The hand-off: what a worker does with the messages of one batch (docs/architecture.md,
-- "The hand-off").
--
-- A worker reads a batch with pgmq.read (autocommit, so read_ct counts attempts durably),
-- opens one transaction, claims the messages it still owns, runs the handlers and ends with
-- ONE call of orchestrator.complete(), which hands off the successes, schedules the retries
-- and dead-letters the rest; then it commits.
--
-- Every function here is fenced: a message is named by (msg_id, read_ct), the read_ct the
-- worker saw when it read it. A message read again by someone else (after its vt expired) has
-- another read_ct and is never touched. complete() raises (SQLSTATE 55000) when a message it
-- was given is no longer owned, so the caller's transaction rolls back as a whole: no
-- message is ever handed off twice.

-- Claim messages of `queue_name` for the caller's transaction: take the advisory locks of
-- their runs, then lock the messages still at the read_ct the caller saw; returns the msg_ids
-- claimed. `run_ids[i]` is the run of `msg_ids[i]` as the caller read it (NULL: looked up in
-- the headers here). Messages of cancelled runs are deleted instead of claimed (the caller
-- commits even when it claimed nothing, so that they leave).
--
-- The cancel guarantee: the run locks (orchestrator.run_lock_key, shared) are held until the
-- batch's transaction ends, and cancel_run takes them exclusively before it looks at
-- anything. So a cancel waits for every batch that claimed a message of the run (their
-- handlers all start before it commits), and a claim that comes later waits for the cancel
-- to end; its look-up of cancelled_runs, a statement after the locks, then sees the committed
-- cancel. No handler of a cancelled run starts after its cancel committed, on any worker,
-- whether it hears notifications or not. Shared locks never wait for each other and a claim
-- takes them before any row lock, while a cancel never waits for a row (SKIP LOCKED), so
-- the order of the locks does not matter. Cost: one lock and one probe of cancelled_runs'
-- primary key per message.
--
-- The row lock is FOR KEY SHARE. pgmq.read locks FOR UPDATE SKIP LOCKED, which conflicts
-- with it, so no reader can take a claimed message however long its handler runs. Unlike FOR
-- UPDATE, it lets another session update vt (extend_lease) without waiting for the
-- transaction, so a lease can be extended durably while the handler is still at work.
--
-- The claim waits for row locks instead of skipping them: a concurrent pgmq.read whose
-- snapshot still showed our message as visible locks it for a moment (FOR UPDATE, then drops
-- it when it re-checks vt), and skipping would lose the attempt for nothing. A message
-- someone else really took has another read_ct: the predicate drops it before any wait once
-- their read committed, and right after it (re-checking the new row version) while it is in
-- flight. Other claims (KEY SHARE) and vt updates (NO KEY UPDATE) do not conflict at all, so
-- only short-lived row locks are ever waited for; lock_timeout bounds every wait, a run lock
-- held by a waiting cancel included.
CREATE OR REPLACE FUNCTION orchestrator.claim(
    queue_name text, msg_ids bigint[], read_cts integer[], run_ids uuid[] DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE plpgsql
SET lock_timeout = '5s'
AS $$
DECLARE
    doomed uuid[];
    fn text;
    owned boolean;
BEGIN
    IF run_ids IS NULL THEN
        EXECUTE format(
            'SELECT array_agg((SELECT orchestrator.uuid_or_null(q.headers ->> ''run_id'')'
            ' FROM %s q WHERE q.msg_id = f.id) ORDER BY f.i)'
            ' FROM unnest($1::bigint[]) WITH ORDINALITY AS f (id, i)',
            pgmq_ext.queue_table(queue_name))
            INTO run_ids
            USING msg_ids;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(orchestrator.run_lock_key(r))
       FROM unnest(run_ids) AS r WHERE r IS NOT NULL;
    -- A statement of its own: its snapshot is taken after the locks were granted.
    doomed := ARRAY(SELECT c.run_id FROM orchestrator.cancelled_runs c WHERE c.run_id = ANY (run_ids));
    IF cardinality(doomed) > 0 THEN
        -- `msg_id = ANY` keeps the queue's primary key in the plan whatever the planner
        -- thinks of the unnest (a join on it alone may be planned as a scan of the queue).
        EXECUTE format(
            'DELETE FROM %s q WHERE q.msg_id = ANY ($1::bigint[])'
            ' AND (q.msg_id, q.read_ct) IN (SELECT f.id, f.ct FROM unnest($1::bigint[], $2::integer[]) AS f (id, ct))',
            pgmq_ext.queue_table(queue_name))
            USING ARRAY(SELECT k.id FROM unnest(msg_ids, run_ids) AS k (id, run) WHERE k.run = ANY (doomed)),
                  ARRAY(SELECT k.ct FROM unnest(read_cts, run_ids) AS k (ct, run) WHERE k.run = ANY (doomed));
    END IF;
    -- One message (batch_size 1): the queue's own function, whose statement is planned once
    -- per session; a batch, or a queue without its functions, the statement planned here.
    IF cardinality(msg_ids) = 1 THEN
        fn := pgmq_ext.queue_function(queue_name, 'lock_owned');
    END IF;
    IF fn IS NOT NULL THEN
        EXECUTE 'SELECT ' || fn || '($1, $2)' INTO owned USING msg_ids[1], read_cts[1];
        IF owned THEN
            RETURN NEXT msg_ids[1];
        END IF;
        RETURN;
    END IF;
    -- `q.msg_id = ANY ($1)` (here and in hand_off): the ids are a constant of the statement
    -- planned for this call, so PostgreSQL opens only the partitions holding them when the
    -- queue is partitioned by msg_id (a join on the unnest alone prunes none at plan time).
    RETURN QUERY EXECUTE format(
        'SELECT q.msg_id FROM %s q JOIN unnest($1::bigint[], $2::integer[]) AS f (id, ct)'
        ' ON q.msg_id = f.id AND q.read_ct = f.ct'
        ' WHERE q.msg_id = ANY ($1::bigint[])'
        ' ORDER BY q.msg_id FOR KEY SHARE OF q',
        pgmq_ext.queue_table(queue_name))
        USING msg_ids, read_cts;
END
$$;

-- Move the vt of owned messages to `seconds` from now; returns how many were still owned.
-- Called from another session than the one holding the claim while handlers run, so that
-- after a crash the messages come back `seconds` after the last sign of life.
CREATE OR REPLACE FUNCTION orchestrator.extend_lease(
    queue_name text, msg_ids bigint[], read_cts integer[], seconds double precision)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    moved integer;
BEGIN
    EXECUTE format(
        'UPDATE %s q SET vt = $3 FROM unnest($1::bigint[], $2::integer[]) AS f (id, ct)'
        ' WHERE q.msg_id = f.id AND q.read_ct = f.ct',
        pgmq_ext.queue_table(queue_name))
        USING msg_ids, read_cts, clock_timestamp() + make_interval(secs => seconds);
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved;
END
$$;

-- Messages made visible at once by an update (`release`, `unread`) get no insert notification:
-- send the queue's one (delivered at commit), so idle workers read them now rather than at
-- their next safety poll. Returns `moved`.
CREATE OR REPLACE FUNCTION orchestrator.announce_visible(queue_name text, moved integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
BEGIN
    IF moved > 0 THEN
        PERFORM pg_notify('pgmq.q_' || lower(queue_name COLLATE "C") || '.INSERT', NULL);
    END IF;
    RETURN moved;
END
$$;

-- Give owned messages back: visible again at once (after a worker gave up on a batch it had
-- not handed off, e.g. when cancelled). Returns how many were still owned.
CREATE OR REPLACE FUNCTION orchestrator.release(queue_name text, msg_ids bigint[], read_cts integer[])
RETURNS integer
LANGUAGE sql
AS $$
    SELECT orchestrator.announce_visible(
        queue_name, orchestrator.extend_lease(queue_name, msg_ids, read_cts, 0))
$$;

-- Mark an owned message as run alone at read `read_ct` (headers.isolated), committed before its
-- handler starts: when that read too is lost, the next read knows the message itself ended its
-- worker (see docs/architecture.md, "Poison messages"). headers.isolated_streak counts the
-- reads lost alone just before this one (a suspect's previous read was lost: if it ran alone,
-- isolated is that read). Returns whether it was still owned.
CREATE OR REPLACE FUNCTION orchestrator.isolate(queue_name text, msg_id bigint, read_ct integer)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    moved integer;
BEGIN
    EXECUTE format(
        'UPDATE %s q SET headers = coalesce(q.headers, ''{}''::jsonb)'
        ' || jsonb_build_object(''isolated'', $2, ''isolated_streak'','
        '      CASE WHEN q.headers ->> ''isolated'' = ($2 - 1)::text'
        '           THEN coalesce((q.headers ->> ''isolated_streak'')::integer, 0) + 1 ELSE 0 END)'
        ' WHERE q.msg_id = $1 AND q.read_ct = $2',
        pgmq_ext.queue_table(queue_name))
        USING msg_id, read_ct;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved = 1;
END
$$;

-- Take back the mark of isolate() while the process that made it lives on: the run alone
-- ended some other way (a lost connection, a batch given back, or an outcome recorded), so a
-- later loss of the read proves nothing of the message. Fenced by read_ct; whether it was.
CREATE OR REPLACE FUNCTION orchestrator.unisolate(queue_name text, msg_id bigint, read_ct integer)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    moved integer;
BEGIN
    EXECUTE format(
        'UPDATE %s q SET headers = q.headers - ''{isolated,isolated_streak}''::text[]'
        ' WHERE q.msg_id = $1 AND q.read_ct = $2 AND q.headers ? ''isolated''',
        pgmq_ext.queue_table(queue_name))
        USING msg_id, read_ct;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved = 1;
END
$$;

-- Give owned messages back as if this read never happened: visible at once, read_ct one less.
-- For suspects read together (see isolate()): one runs alone, the others are given back
-- unread, so they pay no attempt for a read whose handler never ran.
CREATE OR REPLACE FUNCTION orchestrator.unread(queue_name text, msg_ids bigint[], read_cts integer[])
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    moved integer;
BEGIN
    EXECUTE format(
        'UPDATE %s q SET vt = clock_timestamp(), read_ct = q.read_ct - 1'
        ' FROM unnest($1::bigint[], $2::integer[]) AS f (id, ct)'
        ' WHERE q.msg_id = f.id AND q.read_ct = f.ct',
        pgmq_ext.queue_table(queue_name))
        USING msg_ids, read_cts;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN orchestrator.announce_visible(queue_name, moved);
END
$$;

-- Raise the error of a lost lease when `done` of `wanted` messages were still owned.
CREATE OR REPLACE FUNCTION orchestrator.check_owned(queue_name text, what text, wanted integer, done integer)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF coalesce(done, 0) <> coalesce(wanted, 0) THEN
        RAISE EXCEPTION 'lease lost: % of % message(s) to % in queue "%" are no longer owned by this worker',
            coalesce(wanted, 0) - coalesce(done, 0), coalesce(wanted, 0), what, queue_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Another worker read them after their visibility timeout; roll back.';
    END IF;
END
$$;

-- Record the arrival of step `from_step`'s outputs at join step `join_step` (one per run) and
-- enqueue the join step for every run whose predecessors have now all arrived; returns how
-- many runs were completed. The upsert's row lock serialises arrivals for one run, so when
-- the last two arrive at once in two transactions, the second sees the first's output and
-- exactly one of them completes the join. Rows are upserted in run_id order so that two
-- batches sharing runs lock them in the same order (no deadlock).
-- The join step's payload is {"<predecessor>": <its output>, ...}.
CREATE OR REPLACE FUNCTION orchestrator.arrive(
    pipeline text,
    join_step text,
    from_step text,
    expected text[],
    delay double precision,
    run_ids uuid[],
    outputs jsonb[],
    parent_ids bigint[],
    parent_headers jsonb[],
    sent_at timestamptz
)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    payloads jsonb[];
    headers jsonb[];
    join_group text[];
BEGIN
    WITH arrival AS (
        SELECT DISTINCT ON (a.run_id) a.run_id, a.output, a.parent_id, a.headers
          FROM unnest(run_ids, outputs, parent_ids, parent_headers) AS a (run_id, output, parent_id, headers)
         ORDER BY a.run_id, a.parent_id DESC
    ), upserted AS (
        INSERT INTO orchestrator.joins AS j (pipeline, step, run_id, arrived, expected)
        SELECT arrive.pipeline, join_step, a.run_id, jsonb_build_object(from_step, a.output), expected
          FROM arrival a
         ORDER BY a.run_id
        ON CONFLICT ON CONSTRAINT joins_pkey DO UPDATE
           SET arrived = j.arrived || excluded.arrived,
               completed_at = CASE WHEN (j.arrived || excluded.arrived) ?& j.expected
                                   THEN clock_timestamp() END
         WHERE j.completed_at IS NULL
        RETURNING j.run_id, j.arrived, j.completed_at
    )
    SELECT array_agg(u.arrived ORDER BY u.run_id),
           array_agg(orchestrator.step_headers(
                         a.headers, orchestrator.header_base(arrive.pipeline, join_step, from_step, sent_at),
                         u.run_id, a.parent_id) - 'x-pgmq-group'
                     ORDER BY u.run_id)
      INTO payloads, headers
      FROM upserted u
      JOIN arrival a ON a.run_id = u.run_id
     WHERE u.completed_at IS NOT NULL;
    IF payloads IS NULL THEN
        RETURN 0;
    END IF;
    SELECT orchestrator.group_path(p.spec, join_step) INTO join_group
      FROM orchestrator.pipelines p WHERE p.name = arrive.pipeline;
    IF join_group IS NOT NULL THEN
        headers := ARRAY(SELECT orchestrator.grouped(h, b, join_group)
                           FROM unnest(headers, payloads) AS x (h, b));
    END IF;
    PERFORM pgmq.send_batch(orchestrator.step_queue(pipeline, join_step), payloads, headers,
                            sent_at + make_interval(secs => delay));
    RETURN cardinality(payloads);
END
$$;

-- Hand off the messages `msg_ids` (at `read_cts`) of `pipeline`.`step`, whose handlers
-- returned `outputs` (JSON objects) in runs `run_ids`: archive them (delete them when
-- `archive` is false) and send each output to every route. `routes` lists the successors:
-- [{"step": "<name>", "delay": <seconds>, "expects": null | ["<predecessor>", ...],
--   "spec_hash": "<the sender's spec hash>"}]; a route with `expects` is a join (see arrive()).
-- Raises when a message is no longer owned.
-- Called only in the transaction of the claim of these messages (see orchestrator.claim()).
--
-- One message (batch_size 1) takes a path of its own: the queue's own fenced move
-- (pgmq_ext."move_owned:<queue>") and send (pgmq_ext.send_one, the successor queue's
-- "send:<queue>"), whose statements are planned once per session, and its headers as plain
-- expressions, no array built or unnested. A batch, or a queue without its functions, moves
-- with one statement planned here and sends with send_many.
CREATE OR REPLACE FUNCTION orchestrator.hand_off(
    pipeline text,
    step text,
    routes jsonb,
    archive boolean,
    msg_ids bigint[],
    read_cts integer[],
    run_ids uuid[],
    outputs jsonb[],
    OUT handed_off integer,
    OUT sent integer,
    OUT joins_completed integer
)
LANGUAGE plpgsql
AS $$
DECLARE
    queue text := orchestrator.step_queue(pipeline, step);
    n integer := coalesce(cardinality(msg_ids), 0);
    now_ts timestamptz := clock_timestamp();
    move_fn text;
    owned boolean;
    moved integer;
    moved_ids bigint[];
    moved_headers jsonb[];
    parent_headers jsonb[];
    route jsonb;
    base jsonb;
    hash_header jsonb;
    group_path text[];
    one_headers jsonb;
BEGIN
    handed_off := 0;
    sent := 0;
    joins_completed := 0;
    IF n = 0 THEN
        RETURN;
    END IF;
    IF cardinality(read_cts) <> n OR cardinality(run_ids) <> n OR cardinality(outputs) <> n THEN
        RAISE EXCEPTION 'hand_off needs one read_ct, run_id and output per message'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF n = 1 THEN
        move_fn := pgmq_ext.queue_function(queue, 'move_owned');
    END IF;
    IF move_fn IS NOT NULL THEN
        EXECUTE 'SELECT * FROM ' || move_fn || '($1, $2, $3)'
            INTO owned, one_headers
            USING msg_ids[1], read_cts[1], archive;
        moved := CASE WHEN owned THEN 1 ELSE 0 END;
    ELSE
        -- One statement moves the batch: delete (fenced) and, unless archiving is off, insert
        -- into the archive; the parents' headers come back for the next messages.
        EXECUTE format(
            'WITH gone AS ('
            ' DELETE FROM %1$s q USING unnest($1::bigint[], $2::integer[]) AS f (id, ct)'
            ' WHERE q.msg_id = ANY ($1::bigint[]) AND q.msg_id = f.id AND q.read_ct = f.ct'
            ' RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers'
            '), kept AS ('
            ' INSERT INTO %2$s (msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers)'
            ' SELECT * FROM gone WHERE $3'
            ') SELECT array_agg(msg_id), array_agg(headers) FROM gone',
            pgmq_ext.queue_table(queue), pgmq_ext.archive_table(queue))
            INTO moved_ids, moved_headers
            USING msg_ids, read_cts, archive;
        moved := cardinality(moved_ids);
    END IF;
    IF moved IS DISTINCT FROM n THEN
        PERFORM orchestrator.check_owned(queue, 'hand off', n, moved);
    END IF;
    handed_off := n;
    IF jsonb_array_length(routes) = 0 THEN
        RETURN;
    END IF;
    -- No run here can be cancelled: the claim in this transaction took the runs' locks and
    -- dropped the messages of runs cancelled before it, and a cancel waits for those locks.
    -- The next messages carry the spec hash of the sender (set in its routes) when it has one:
    -- it goes into each route's common headers (`base`), so no message's headers are rebuilt
    -- for it (a join gets it in its parents' headers). A parent's FIFO group never travels on
    -- (see grouped()): removed here, once for every route, only from the headers holding one.
    hash_header := CASE WHEN routes -> 0 ? 'spec_hash'
                        THEN jsonb_build_object('spec_hash', routes -> 0 -> 'spec_hash')
                        ELSE '{}' END;
    IF move_fn IS NOT NULL THEN
        parent_headers := ARRAY[CASE WHEN one_headers ? 'x-pgmq-group' THEN one_headers - 'x-pgmq-group'
                                     ELSE one_headers END];
    ELSE
        parent_headers := ARRAY(
            SELECT CASE WHEN m.headers ? 'x-pgmq-group' THEN m.headers - 'x-pgmq-group'
                        ELSE m.headers END
              FROM unnest(msg_ids) WITH ORDINALITY AS d (id, i)
              JOIN unnest(moved_ids, moved_headers) AS m (id, headers) ON m.id = d.id
             ORDER BY d.i);
    END IF;
    -- Plain expressions where they do (a loop over a query, or a sub-select, runs through the
    -- executor each time): they cost a fraction at one message per call.
    FOR i IN 0 .. jsonb_array_length(routes) - 1 LOOP
        route := routes -> i;
        IF jsonb_typeof(route -> 'expects') = 'array' THEN
            joins_completed := joins_completed + orchestrator.arrive(
                pipeline, route ->> 'step', step,
                ARRAY(SELECT jsonb_array_elements_text(route -> 'expects')),
                coalesce((route ->> 'delay')::float8, 0),
                run_ids, outputs, msg_ids,
                ARRAY(SELECT h.headers || hash_header
                        FROM unnest(parent_headers) WITH ORDINALITY AS h (headers, i)
                       ORDER BY h.i),
                now_ts);
        ELSE
            base := orchestrator.header_base(pipeline, route ->> 'step', step, now_ts) || hash_header;
            group_path := NULL;
            IF jsonb_typeof(route -> 'group') = 'array' THEN
                group_path := ARRAY(SELECT jsonb_array_elements_text(route -> 'group'));
            END IF;
            sent := sent + orchestrator.send_step(
                orchestrator.step_queue(pipeline, route ->> 'step'),
                now_ts + make_interval(secs => coalesce((route ->> 'delay')::float8, 0)),
                base, group_path, parent_headers, run_ids, msg_ids, outputs);
        END IF;
    END LOOP;
END
$$;

-- Send `outputs` to queue `target`, visible at `vt`: one message per parent (`parent_ids`,
-- of runs `run_ids`, with `parent_headers`), with the headers of step_headers() over `base`,
-- grouped by `group_path` (NULL: the step has no group_by). Returns how many were sent.
-- Without a group, no grouped() call: PostgreSQL cannot inline it (its argument is volatile),
-- and a call per message costs more than the headers themselves. One message is sent with
-- pgmq_ext.send_one (the queue's own "send:<queue>"), its headers one expression.
CREATE OR REPLACE FUNCTION orchestrator.send_step(
    target text,
    vt timestamptz,
    base jsonb,
    group_path text[],
    parent_headers jsonb[],
    run_ids uuid[],
    parent_ids bigint[],
    outputs jsonb[]
)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    one_headers jsonb;
    sent_id bigint;
BEGIN
    IF cardinality(outputs) = 1 THEN
        one_headers := orchestrator.step_headers(parent_headers[1], base, run_ids[1], parent_ids[1]);
        IF group_path IS NOT NULL THEN
            one_headers := orchestrator.grouped(one_headers, outputs[1], group_path);
        END IF;
        sent_id := pgmq_ext.send_one(target, vt, outputs[1], one_headers);
        RETURN 1;
    END IF;
    PERFORM pgmq.send_batch(
        target,
        outputs,
        CASE WHEN group_path IS NULL
             THEN ARRAY(SELECT orchestrator.step_headers(p.headers, base, p.run_id, p.id)
                          FROM unnest(parent_headers, run_ids, parent_ids) AS p (headers, run_id, id))
             ELSE ARRAY(SELECT orchestrator.grouped(
                                   orchestrator.step_headers(p.headers, base, p.run_id, p.id),
                                   p.output, group_path)
                          FROM unnest(parent_headers, run_ids, parent_ids, outputs)
                               AS p (headers, run_id, id, output)) END,
        vt);
    RETURN cardinality(outputs);
END
$$;

-- Schedule another attempt of owned messages: visible `delays[i]` seconds from now, with
-- `headers[i]` (the headers with the failed attempt appended to "errors"). Raises when a
-- message is no longer owned.
CREATE OR REPLACE FUNCTION orchestrator.retry_later(
    queue_name text, msg_ids bigint[], read_cts integer[], delays double precision[], headers jsonb[])
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    n integer := coalesce(cardinality(msg_ids), 0);
    moved integer;
BEGIN
    IF n = 0 THEN
        RETURN 0;
    END IF;
    EXECUTE format(
        'UPDATE %s q SET vt = $5 + make_interval(secs => greatest(f.delay, 0)), headers = f.headers'
        ' FROM unnest($1::bigint[], $2::integer[], $3::float8[], $4::jsonb[]) AS f (id, ct, delay, headers)'
        ' WHERE q.msg_id = f.id AND q.read_ct = f.ct',
        pgmq_ext.queue_table(queue_name))
        USING msg_ids, read_cts, delays, headers, clock_timestamp();
    GET DIAGNOSTICS moved = ROW_COUNT;
    PERFORM orchestrator.check_owned(queue_name, 'retry', n, moved);
    RETURN moved;
END
$$;

-- Move owned messages to the dead-letter queue `dead_letter_queue`: delete them from
-- `queue_name` and send `bodies[i]` (see docs/architecture.md, "Messages"; `failed_at` is
-- set here) with headers {"run_id", "pipeline", "step", "dead_letter": true}. Raises when a
-- message is no longer owned.
CREATE OR REPLACE FUNCTION orchestrator.dead_letter(
    queue_name text, dead_letter_queue text, msg_ids bigint[], read_cts integer[], bodies jsonb[])
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    n integer := coalesce(cardinality(msg_ids), 0);
    now_ts timestamptz := clock_timestamp();
    gone integer;
BEGIN
    IF n = 0 THEN
        RETURN 0;
    END IF;
    EXECUTE format(
        'DELETE FROM %s q USING unnest($1::bigint[], $2::integer[]) AS f (id, ct)'
        ' WHERE q.msg_id = f.id AND q.read_ct = f.ct',
        pgmq_ext.queue_table(queue_name))
        USING msg_ids, read_cts;
    GET DIAGNOSTICS gone = ROW_COUNT;
    PERFORM orchestrator.check_owned(queue_name, 'dead-letter', n, gone);
    PERFORM pgmq.send_batch(
        dead_letter_queue,
        ARRAY(SELECT b || jsonb_build_object('failed_at', now_ts) FROM unnest(bodies) AS b),
        ARRAY(SELECT jsonb_build_object('run_id', b -> 'run_id', 'pipeline', b -> 'pipeline',
                                        'step', b -> 'step', 'dead_letter', true)
                FROM unnest(bodies) AS b));
    RETURN n;
END
$$;

-- Failed attempts of cancelled runs get no retry: delete those messages (fenced) and return
-- the retries left, with how many were dropped.
CREATE OR REPLACE FUNCTION orchestrator.drop_cancelled(
    queue_name text, msg_ids bigint[], read_cts integer[], delays double precision[], headers jsonb[],
    OUT gone integer, OUT ids bigint[], OUT read_cts_left integer[],
    OUT delays_left double precision[], OUT headers_left jsonb[])
LANGUAGE plpgsql
AS $$
DECLARE
    cancelled uuid[] := orchestrator.cancelled_among(ARRAY(
        SELECT (h ->> 'run_id')::uuid FROM unnest(headers) AS h
         WHERE h ->> 'run_id' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'));
    doomed bigint[];
BEGIN
    gone := 0;
    ids := msg_ids;
    read_cts_left := read_cts;
    delays_left := delays;
    headers_left := headers;
    IF cardinality(cancelled) = 0 THEN
        RETURN;
    END IF;
    SELECT array_agg(k.id) FILTER (WHERE k.dead),
           coalesce(array_agg(k.id ORDER BY k.i) FILTER (WHERE NOT k.dead), '{}'),
           coalesce(array_agg(k.ct ORDER BY k.i) FILTER (WHERE NOT k.dead), '{}'),
           coalesce(array_agg(k.delay ORDER BY k.i) FILTER (WHERE NOT k.dead), '{}'),
           coalesce(array_agg(k.h ORDER BY k.i) FILTER (WHERE NOT k.dead), '{}')
      INTO doomed, ids, read_cts_left, delays_left, headers_left
      FROM (SELECT u.*, coalesce(u.h ->> 'run_id' = ANY (cancelled::text[]), false) AS dead
              FROM unnest(msg_ids, read_cts, delays, headers) WITH ORDINALITY AS u (id, ct, delay, h, i)
           ) AS k;
    EXECUTE format(
        'DELETE FROM %s q USING unnest($1::bigint[], $2::integer[]) AS f (id, ct)'
        ' WHERE q.msg_id = f.id AND q.read_ct = f.ct AND q.msg_id = ANY ($3)',
        pgmq_ext.queue_table(queue_name))
        USING msg_ids, read_cts, doomed;
    GET DIAGNOSTICS gone = ROW_COUNT;
END
$$;

-- Everything a batch ends with, in one call (one round trip): hand off the successes (and
-- publish them with the step's routing keys `publish`, NULL when it has none), retry or
-- dead-letter the failures. `sent` counts the messages sent to the next steps and those
-- published. The caller runs it in the transaction holding the claim and the handlers'
-- writes, then commits.
CREATE OR REPLACE FUNCTION orchestrator.complete(
    pipeline text,
    step text,
    routes jsonb,
    archive boolean,
    dead_letter_queue text,
    done_ids bigint[],
    done_read_cts integer[],
    done_run_ids uuid[],
    done_outputs jsonb[],
    retry_ids bigint[],
    retry_read_cts integer[],
    retry_delays double precision[],
    retry_headers jsonb[],
    dead_ids bigint[],
    dead_read_cts integer[],
    dead_bodies jsonb[],
    publish text[],
    OUT handed_off integer,
    OUT sent integer,
    OUT joins_completed integer,
    OUT retried integer,
    OUT dead_lettered integer
)
LANGUAGE plpgsql
AS $$
DECLARE
    queue text := orchestrator.step_queue(pipeline, step);
    dropped integer;
BEGIN
    SELECT h.handed_off, h.sent, h.joins_completed INTO handed_off, sent, joins_completed
      FROM orchestrator.hand_off(pipeline, step, routes, archive, done_ids, done_read_cts,
                                 done_run_ids, done_outputs) AS h;
    IF publish IS NOT NULL THEN
        sent := sent + orchestrator.publish(pipeline, step, publish, done_ids, done_run_ids, done_outputs);
    END IF;
    retried := 0;
    dead_lettered := 0;
    -- A batch without failures (the common case) calls nothing more.
    IF cardinality(retry_ids) > 0 THEN
        SELECT d.gone, d.ids, d.read_cts_left, d.delays_left, d.headers_left
          INTO dropped, retry_ids, retry_read_cts, retry_delays, retry_headers
          FROM orchestrator.drop_cancelled(queue, retry_ids, retry_read_cts, retry_delays, retry_headers) AS d;
        retried := orchestrator.retry_later(queue, retry_ids, retry_read_cts, retry_delays, retry_headers);
    END IF;
    IF cardinality(dead_ids) > 0 THEN
        dead_lettered := orchestrator.dead_letter(queue, dead_letter_queue, dead_ids, dead_read_cts, dead_bodies);
    END IF;
END
$$;

-- complete() as workers of the release before topics call it (sixteen arguments, no routing
-- keys): during a rolling deploy they go on handing off, publishing nothing, until they are
-- replaced. The seventeen-argument form has no default, so no call is ambiguous.
CREATE OR REPLACE FUNCTION orchestrator.complete(
    pipeline text,
    step text,
    routes jsonb,
    archive boolean,
    dead_letter_queue text,
    done_ids bigint[],
    done_read_cts integer[],
    done_run_ids uuid[],
    done_outputs jsonb[],
    retry_ids bigint[],
    retry_read_cts integer[],
    retry_delays double precision[],
    retry_headers jsonb[],
    dead_ids bigint[],
    dead_read_cts integer[],
    dead_bodies jsonb[],
    OUT handed_off integer,
    OUT sent integer,
    OUT joins_completed integer,
    OUT retried integer,
    OUT dead_lettered integer
)
LANGUAGE sql
AS $$
    SELECT * FROM orchestrator.complete(
        pipeline, step, routes, archive, dead_letter_queue, done_ids, done_read_cts,
        done_run_ids, done_outputs, retry_ids, retry_read_cts, retry_delays, retry_headers,
        dead_ids, dead_read_cts, dead_bodies, NULL::text[])
$$;
