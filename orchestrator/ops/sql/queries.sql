-- Queries of the operations layer. Each starts with a `-- name: <name>` line and a one-line
-- description; orchestrator/ops/queries.py loads them by name. Queue names go to the SQL
-- functions of schema orchestrator (store/sql/functions/5x_ops_*.sql), never into this text.

-- name: clock
-- The database's clock (every age and window is measured against it, not the client's).
SELECT clock_timestamp();

-- name: queue_stats
-- ops_queue_stats of every queue in $1 (window starts at $2); a missing queue gives NULLs.
SELECT n.queue_name, s.*
  FROM unnest($1::text[]) AS n (queue_name)
  LEFT JOIN LATERAL orchestrator.ops_queue_stats(n.queue_name, $2) s ON true;

-- name: queue_table_numbers
-- ops_queue_table_numbers of every queue in $1 (no message counted); a missing queue gives no row.
SELECT n.queue_name, s.*
  FROM unnest($1::text[]) AS n (queue_name)
  CROSS JOIN LATERAL orchestrator.ops_queue_table_numbers(n.queue_name) s;

-- name: dead_letter_stats
-- Dead letters per failed step of the dead-letter queue $1 (recent: since $2).
SELECT step, depth, recent, recent_failures FROM orchestrator.ops_dead_letter_counts($1, $2);

-- name: partitioned
-- Which of the queues in $1 are partitioned.
SELECT queue_name::text FROM pgmq.meta WHERE is_partitioned AND queue_name = ANY ($1::text[]);

-- name: run_messages
-- Every message of run $2 in the queues $1 and their archives.
SELECT * FROM orchestrator.ops_run_messages($1::text[], $2);

-- name: run_joins
-- Join state of run $1: which predecessors arrived at which join step.
SELECT pipeline, step, arrived, expected, created_at, completed_at
  FROM orchestrator.joins
 WHERE run_id = $1::uuid
 ORDER BY created_at;

-- name: dead_letters
-- Dead letters of queue $1 matching the filter ($2 step, $3 error text, $4 since, $5 before,
-- $6 ids), newest first, at most $7.
SELECT * FROM orchestrator.ops_dead_letters($1, $2, $3, $4, $5, $6, $7);

-- name: count_dead_letters
-- How many dead letters of queue $1 match the filter ($2 step, $3 error, $4 since, $5 before,
-- $6 ids).
SELECT orchestrator.ops_count_dead_letters($1, $2, $3, $4, $5, $6);

-- name: replay_dead_letters
-- Replay up to $7 dead letters of queue $1 into pipeline $2's step queues ($3 step, $4 error,
-- $5 ids, $6 msg_id greater than), one transaction per call.
SELECT * FROM orchestrator.ops_replay_dead_letters($1, $2, $3, $4, $5, $6, $7);

-- name: purge_dead_letters
-- Delete up to $4 dead letters of queue $1 ($2 step, $3 entered before).
SELECT orchestrator.ops_purge_dead_letters($1, $2, $3, $4);

-- name: trim_archive
-- Delete up to $3 rows archived before $2 from the archive of queue $1.
SELECT orchestrator.ops_trim_archive($1, $2, $3);

-- name: trim_joins
-- Delete up to $2 join rows completed before $1; returns how many.
WITH gone AS (
    DELETE FROM orchestrator.joins j
     USING (SELECT pipeline, step, run_id
              FROM orchestrator.joins
             WHERE completed_at < $1
             ORDER BY completed_at
             LIMIT $2
               FOR UPDATE SKIP LOCKED) old
     WHERE (j.pipeline, j.step, j.run_id) = (old.pipeline, old.step, old.run_id)
    RETURNING 1
)
SELECT count(*) FROM gone;

-- name: trim_incomplete_joins
-- Delete up to $3 join rows of pipeline $1 still incomplete and created before $2; returns how
-- many (through the primary key's pipeline prefix; rows an arrival holds are skipped).
WITH gone AS (
    DELETE FROM orchestrator.joins j
     USING (SELECT pipeline, step, run_id
              FROM orchestrator.joins
             WHERE pipeline = $1 AND completed_at IS NULL AND created_at < $2
             LIMIT $3
               FOR UPDATE SKIP LOCKED) old
     WHERE (j.pipeline, j.step, j.run_id) = (old.pipeline, old.step, old.run_id)
       AND j.completed_at IS NULL
    RETURNING 1
)
SELECT count(*) FROM gone;

-- name: waiting_joins
-- Runs waiting at each join step ($1 pipelines, $2 steps, pairwise): how many, and when the
-- oldest one's first predecessor arrived (one primary-key range per step).
SELECT s.pipeline, s.step, count(j.run_id) AS waiting, min(j.created_at) AS oldest_created_at
  FROM unnest($1::text[], $2::text[]) AS s (pipeline, step)
  LEFT JOIN orchestrator.joins j
    ON j.pipeline = s.pipeline AND j.step = s.step AND j.completed_at IS NULL
 GROUP BY s.pipeline, s.step;

-- name: schedule_rows
-- Recorded ticks of every schedule.
SELECT pipeline, name, cron, last_tick, next_tick, updated_at
  FROM orchestrator.schedules
 ORDER BY pipeline, name;

-- name: lock_schedule
-- The row of schedule ($1 pipeline, $2 name), locked until the end of the transaction.
SELECT cron, last_tick, next_tick, updated_at
  FROM orchestrator.schedules
 WHERE pipeline = $1 AND name = $2
   FOR UPDATE;

-- name: insert_schedule
-- First sight of a schedule: ticks count from $4 (its creation), next tick $5.
INSERT INTO orchestrator.schedules (pipeline, name, cron, last_tick, next_tick, updated_at)
VALUES ($1, $2, $3, NULL, $5, $4)
ON CONFLICT (pipeline, name) DO NOTHING;

-- name: update_schedule
-- Record the last tick handled and the next one.
UPDATE orchestrator.schedules
   SET cron = $3, last_tick = $4, next_tick = $5, updated_at = $6
 WHERE pipeline = $1 AND name = $2;

-- name: start_runs
-- Start one run of pipeline $1 per payload $2 (JSON text), each with extra headers $3.
SELECT run_id
  FROM orchestrator.start_runs($1, $2::text[]::jsonb[], $3::text[]::jsonb[]) AS run_id;

-- name: flow
-- Flow control per step of the applied pipelines $1 (all when NULL): pauses and limits at work.
SELECT * FROM orchestrator.ops_flow($1::text[]);

-- name: cancelled_counts
-- Cancelled runs per pipeline of $1 (all when NULL).
SELECT pipeline, cancelled FROM orchestrator.ops_cancelled_counts($1::text[]);

-- name: run_cancelled
-- Whether run $1 was cancelled: when, by whom, how many waiting messages were removed.
SELECT pipeline, cancelled_at, cancelled_by, removed FROM orchestrator.cancelled_runs WHERE run_id = $1::uuid;

-- name: horizon_holders
-- What holds vacuum's xmin horizon back for longer than $1 seconds: open transactions, prepared transactions, replication slots, standbys' feedback.
SELECT 'transaction' AS kind,
       format('pid %s (%s@%s%s)', a.pid, coalesce(a.usename, '?'),
              coalesce(host(a.client_addr), 'local'),
              CASE WHEN a.application_name <> '' THEN ', ' || a.application_name ELSE '' END)
           AS name,
       format('%s in database %s: %s', a.state, coalesce(a.datname, '?'),
              left(regexp_replace(coalesce(a.query, ''), '\s+', ' ', 'g'), 80)) AS detail,
       a.xact_start AS since,
       age(coalesce(a.backend_xmin, a.backend_xid))::bigint AS xid_age
  FROM pg_stat_activity AS a
 WHERE a.pid <> pg_backend_pid()
   AND coalesce(a.backend_xmin, a.backend_xid) IS NOT NULL
   AND a.xact_start < clock_timestamp() - make_interval(secs => $1)
UNION ALL
SELECT 'prepared transaction', p.gid,
       format('prepared by %s in database %s; COMMIT PREPARED or ROLLBACK PREPARED it', p.owner,
              p.database),
       p.prepared, age(p.transaction)::bigint
  FROM pg_prepared_xacts AS p
 WHERE p.prepared < clock_timestamp() - make_interval(secs => $1)
UNION ALL
SELECT 'replication slot', s.slot_name,
       format('%s slot, %s; drop it with pg_drop_replication_slot if nothing reads it',
              s.slot_type, CASE WHEN s.active THEN 'active' ELSE 'inactive' END),
       NULL, age(coalesce(s.xmin, s.catalog_xmin))::bigint
  FROM pg_replication_slots AS s
 WHERE coalesce(s.xmin, s.catalog_xmin) IS NOT NULL
   AND (NOT s.active OR age(coalesce(s.xmin, s.catalog_xmin)) > 1000000)
UNION ALL
SELECT 'standby feedback', coalesce(r.application_name, r.client_addr::text, r.pid::text),
       'hot_standby_feedback of a standby with a long query', r.backend_start,
       age(r.backend_xmin)::bigint
  FROM pg_stat_replication AS r
 WHERE r.backend_xmin IS NOT NULL AND age(r.backend_xmin) > 1000000
 ORDER BY xid_age DESC NULLS LAST;

-- name: runs_window
-- Entry-step messages of queue $1 with msg_id in [$2, $3) whose body contains $4 (NULL: any),
-- of runs in state $6 (NULL: any; step queues $7, dead-letter queue $8), newest first, at
-- most $5.
SELECT * FROM orchestrator.ops_runs_window($1, $2, $3, $4::jsonb, $5, $6, $7::text[], $8);

-- name: last_msg_id
-- Highest msg_id of queue $1 and its archive.
SELECT orchestrator.ops_last_msg_id($1);

-- name: run_states
-- Messages of the runs $3 still in the step queues $1 (pending) and in dead-letter queue $2.
SELECT run_id, sum(pending)::bigint AS pending, sum(dead)::bigint AS dead
  FROM orchestrator.ops_run_states($1::text[], $2, $3::text[])
 GROUP BY run_id;

-- name: step_activity
-- Hand-offs of queue $1 since $2 per bucket of $3 seconds, with wait and handler percentiles.
SELECT * FROM orchestrator.ops_step_activity($1, $2, $3);

-- name: step_errors
-- Failures of step $3 (queue $1, dead-letter queue $2) since $4, grouped by error type.
SELECT * FROM orchestrator.ops_step_errors($1, $2, $3, $4);

-- name: workers
-- Workers whose last heartbeat is at most $1 seconds old, with the database's clock.
SELECT id, host, pid, steps, started_at, heartbeat_at,
       extract(epoch FROM clock_timestamp() - heartbeat_at)::float8 AS silent_seconds
  FROM orchestrator.workers
 WHERE heartbeat_at > clock_timestamp() - make_interval(secs => $1::float8)
 ORDER BY host, pid;
