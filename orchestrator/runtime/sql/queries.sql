-- Queries of the runtime (orchestrator.runtime.handoff). Each query starts with a
-- `-- name: <name>` line followed by a one-line description; handoff.py loads them by name.
-- Every argument is a typed parameter, so asyncpg prepares each query once per connection.
-- Batches of JSON travel as text[] (one JSON document per element) and are cast to jsonb[] by
-- the server: that works whatever jsonb codec the connection has, and a JSON array can never
-- be mistaken for another array dimension.

-- name: read
-- Read up to $3 visible messages of queue $1, hiding them for $2 seconds (autocommit).
-- The read commits without waiting for its WAL flush (synchronous_commit off for this one
-- implicit transaction): a worker that dies still leaves read_ct counted, since the commit
-- is visible at once; only a crash of the server itself within the WAL writer's delay can
-- forget the read, and then it forgets the attempt with it. The hand-off's COMMIT flushes
-- everything before it. This saves one disk flush per batch.
-- Bodies and headers come as JSON text, decoded by the caller whatever the connection's codecs.
SELECT m.msg_id, m.read_ct, m.message::text, m.headers::text
  FROM pgmq.read($1::text, $2::integer, $3::integer) AS m
 WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL

-- name: claim
-- Lock the messages still at the read_ct we saw, and their runs ($4); returns the msg_ids we own.
SELECT orchestrator.claim($1::text, $2::bigint[], $3::integer[], $4::uuid[])

-- name: complete
-- Hand off (and publish), retry and dead-letter the messages of a batch in one call.
SELECT * FROM orchestrator.complete(
    $1::text, $2::text, $3::text::jsonb, $4::boolean, $5::text,
    $6::bigint[], $7::integer[], $8::uuid[], $9::text[]::jsonb[],
    $10::bigint[], $11::integer[], $12::float8[], $13::text[]::jsonb[],
    $14::bigint[], $15::integer[], $16::text[]::jsonb[], $17::text[])

-- name: complete_and_read
-- complete, then read the next batch ($18 queue, $19 vt, $20 qty) in the same transaction:
-- the read commits (durably) with the hand-off, and the next batch costs no round trip of its
-- own. One row per message read, or one row with NULL message columns when none was.
-- What was read is also left in four session settings (orchestrator.read_ahead_*: queue,
-- msg_ids, read_cts, run ids; set whether or not anything was read, so they are never stale after
-- this statement) for commit_and_claim, which claims it in the COMMIT's round trip.
WITH c AS MATERIALIZED (
    SELECT * FROM orchestrator.complete(
        $1::text, $2::text, $3::text::jsonb, $4::boolean, $5::text,
        $6::bigint[], $7::integer[], $8::uuid[], $9::text[]::jsonb[],
        $10::bigint[], $11::integer[], $12::float8[], $13::text[]::jsonb[],
        $14::bigint[], $15::integer[], $16::text[]::jsonb[], $17::text[])
), r AS MATERIALIZED (
    SELECT m.* FROM c, LATERAL pgmq.read($18::text, $19::integer, $20::integer) AS m
     WHERE c.handed_off IS NOT NULL  -- after complete(): the lateral reference orders them
), ahead AS MATERIALIZED (
    SELECT set_config('orchestrator.read_ahead_queue', $18::text, false),
           set_config('orchestrator.read_ahead_ids',
                      coalesce((SELECT array_agg(r.msg_id ORDER BY r.msg_id) FROM r), '{}')::text,
                      false),
           set_config('orchestrator.read_ahead_cts',
                      coalesce((SELECT array_agg(r.read_ct ORDER BY r.msg_id) FROM r), '{}')::text,
                      false),
           set_config('orchestrator.read_ahead_runs',
                      coalesce((SELECT array_agg(orchestrator.uuid_or_null(r.headers ->> 'run_id')
                                                 ORDER BY r.msg_id) FROM r), '{}')::text,
                      false)
)
SELECT c.handed_off, c.sent, c.joins_completed, c.retried, c.dead_lettered,
       r.msg_id, r.read_ct, r.message::text AS message, r.headers::text AS headers
  FROM c
 CROSS JOIN ahead
  LEFT JOIN r ON true

-- name: commit_and_claim
-- COMMIT the batch whose complete_and_read read the next one ahead, BEGIN the next batch's
-- transaction and claim (orchestrator.claim, fenced by read_ct) what was read ahead, as named
-- by the session settings complete_and_read left: three statements in one round trip (the
-- simple protocol; no value is written into the text). check_owned raises when the claim
-- did not get every message: the new transaction is then aborted, and the caller rolls it
-- back and claims with `claim`, which says which messages are still owned.
COMMIT;
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT orchestrator.check_owned(a.queue, 'claim', cardinality(a.ids),
           (SELECT count(*)::integer FROM orchestrator.claim(a.queue, a.ids, a.cts, a.runs)))
  FROM (SELECT current_setting('orchestrator.read_ahead_queue') AS queue,
               current_setting('orchestrator.read_ahead_ids')::bigint[] AS ids,
               current_setting('orchestrator.read_ahead_cts')::integer[] AS cts,
               current_setting('orchestrator.read_ahead_runs')::uuid[] AS runs) AS a

-- name: extend_lease
-- Move the vt of owned messages $2 (at read_cts $3) of queue $1 to $4 seconds from now.
SELECT orchestrator.extend_lease($1::text, $2::bigint[], $3::integer[], $4::float8)

-- name: isolate
-- Record (committed, before its handler runs) that message $2 at read_ct $3 of queue $1 runs alone.
SELECT orchestrator.isolate($1::text, $2::bigint, $3::integer)

-- name: unisolate
-- Take back the isolated mark of message $2 at read_ct $3 of queue $1 (its process lives on).
SELECT orchestrator.unisolate($1::text, $2::bigint, $3::integer)

-- name: unread
-- Give owned messages back as if not read: visible at once, read_ct one less; how many.
SELECT orchestrator.unread($1::text, $2::bigint[], $3::integer[])

-- name: release
-- Make owned messages visible again at once; returns how many were still owned.
SELECT orchestrator.release($1::text, $2::bigint[], $3::integer[])

-- name: start_runs
-- Start one run per payload (JSON texts) with optional headers and delay; returns run ids.
SELECT orchestrator.start_runs($1::text, $2::text[]::jsonb[], $3::text[]::jsonb[], $4::float8)

-- name: start_runs_unless_contract
-- The entry_contract look-up and start_runs in one statement: when pipeline $1's entry step
-- declares no input contract, start one run per payload and return their ids (`run_ids`, text, in
-- payload order); when it declares one, start nothing (the CASE never evaluates the
-- sub-select) and return it for the caller to check the payloads before start_runs. No row:
-- the pipeline is not applied.
SELECT c.contract, c.entry_step,
       CASE WHEN c.contract IS NULL THEN ARRAY(
           SELECT s.run_id::text
             FROM orchestrator.start_runs($1::text, $2::text[]::jsonb[], $3::text[]::jsonb[], $4::float8)
                  WITH ORDINALITY AS s (run_id, i)
            ORDER BY s.i)
       END AS run_ids
  FROM orchestrator.entry_contract($1::text) AS c

-- name: entry_contract
-- The input contract of an applied pipeline's entry step, as JSON text (NULL: none declared).
SELECT contract, entry_step FROM orchestrator.entry_contract($1::text)

-- name: remaining_messages
-- Messages left in the queues $1 (visible, in flight or delayed): the drain check.
SELECT coalesce(sum(m.queue_length), 0)::bigint
  FROM unnest($1::text[]) AS q(name), LATERAL pgmq.metrics(q.name) AS m

-- name: try_upkeep_locks
-- The advisory lock keys of $1 this session could take (session-level locks).
SELECT k FROM unnest($1::bigint[]) AS k WHERE pg_try_advisory_lock(k)

-- name: start_keyed_runs
-- start_runs with one deduplication key per payload (NULL: none); returns (run_id, duplicate).
SELECT run_id, duplicate
  FROM orchestrator.start_keyed_runs($1::text, $2::text[]::jsonb[], $3::text[]::jsonb[], $4::float8, $5::text[])

-- name: pause
-- Pause pipeline $1, step $2 (NULL: every step); false when it was paused already.
SELECT orchestrator.pause($1::text, $2::text)

-- name: resume
-- Resume pipeline $1, step $2 (NULL: the pipeline); false when it was not paused.
SELECT orchestrator.resume($1::text, $2::text)

-- name: cancel_run
-- Cancel run $1 as $2: (outcome, pipeline, removed, in_flight).
SELECT outcome, pipeline, removed, in_flight FROM orchestrator.cancel_run($1::uuid, $2::text, $3::float8)

-- name: flow_admit
-- Pause, caps, slots and tokens of a limited step in one statement (orchestrator.flow_admit).
SELECT paused, full_queue, slots, granted, short_of, wait
  FROM orchestrator.flow_admit($1::text, $2::text, $3::text[], $4::integer[], $5::text,
                               $6::integer, $7::integer, $8::uuid, $9::float8, $10::text,
                               $11::float8, $12::float8)

-- name: give_tokens
-- Give back $2 tokens to bucket $1.
SELECT orchestrator.give_tokens($1::text, $2::integer)

-- name: give_slots
-- Give back slots $2 of $1 held by $3.
SELECT orchestrator.give_slots($1::text, $2::integer[], $3::uuid)

-- name: paused_since
-- Since when step $2 of pipeline $1 is paused (NULL: it is not).
SELECT orchestrator.paused_since($1::text, $2::text)

-- name: read_grouped
-- Read up to $3 heads of FIFO groups (one message per group, x-pgmq-group header) of queue $1,
-- hiding them for $2 seconds; autocommit, like read.
SELECT m.msg_id, m.read_ct, m.message::text, m.headers::text
  FROM pgmq.read_grouped_head($1::text, $2::integer, $3::integer) AS m
-- name: claim_leases
-- Take or renew upkeep leases $1 for holder $2 for $3 seconds; returns the keys held.
SELECT k FROM orchestrator.claim_leases($1::bigint[], $2::text, make_interval(secs => $3::float8)) AS k

-- name: release_leases
-- Give up every upkeep lease of holder $1.
SELECT orchestrator.release_leases($1::text)
-- name: heartbeat
-- Record that worker $1 (host $2, pid $3, steps $4) is alive now; forget workers silent for
-- longer than $5 seconds (dead processes never delete their own row).
WITH beat AS (
    INSERT INTO orchestrator.workers AS w (id, host, pid, steps)
    VALUES ($1::uuid, $2::text, $3::integer, $4::text[])
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
    RETURNING w.id
)
DELETE FROM orchestrator.workers
 WHERE heartbeat_at < now() - make_interval(secs => $5::float8)
   AND id <> (SELECT id FROM beat)

-- name: heartbeat_stop
-- Worker $1 stops: remove its heartbeat row.
DELETE FROM orchestrator.workers WHERE id = $1::uuid
-- name: next_visible
-- Seconds until each queue of $1 next holds a visible message (NULL: it holds none).
SELECT queue_name, seconds FROM orchestrator.next_visible($1::text[])
