-- What a batch's claim costs in the server, per claim and per message (the claim is where a
-- batch takes its runs' locks and looks their cancels up):
--
--   psql "$DSN" -v batch=100 -v cancelled=10000 -v iterations=2000 -f bench/claim_cost.sql
--
-- on a database with the queue layer and the store installed (e.g. two databases on one
-- server, each installed from its own checkout, to compare two versions of the claim: run the
-- file in each in turn). It makes queue `bench_claim` with `batch` messages of distinct runs,
-- read once, puts `cancelled` other runs in orchestrator.cancelled_runs, then claims the
-- batch `iterations` times, each claim in a transaction of its own (COMMIT in the loop), and
-- prints the microseconds per claim and per message. The cancelled rows are removed at the end.
\set ON_ERROR_STOP on
\set QUIET on
SELECT pgmq.create('bench_claim') WHERE NOT EXISTS (SELECT FROM pgmq.meta WHERE queue_name = 'bench_claim');
TRUNCATE pgmq.q_bench_claim;
DELETE FROM orchestrator.cancelled_runs WHERE pipeline = 'bench_claim';
INSERT INTO orchestrator.cancelled_runs (run_id, pipeline)
SELECT gen_random_uuid(), 'bench_claim' FROM generate_series(1, :cancelled);
SELECT count(*) AS sent FROM pgmq.send_batch('bench_claim',
    ARRAY(SELECT '{}'::jsonb FROM generate_series(1, :batch)),
    ARRAY(SELECT jsonb_build_object('run_id', gen_random_uuid()) FROM generate_series(1, :batch))) \gset
SELECT count(*) AS read FROM pgmq.read('bench_claim', 3600, :batch) \gset
SELECT set_config('bench.iterations', :'iterations', false) \gset
\set QUIET off
DO $$
DECLARE
    ids bigint[];
    cts integer[];
    runs uuid[];
    n integer := current_setting('bench.iterations')::integer;
    t0 timestamptz;
    us double precision;
BEGIN
    SELECT array_agg(msg_id ORDER BY msg_id), array_agg(read_ct ORDER BY msg_id),
           array_agg((headers ->> 'run_id')::uuid ORDER BY msg_id)
      INTO ids, cts, runs FROM pgmq.q_bench_claim;
    PERFORM orchestrator.claim('bench_claim', ids, cts, runs);  -- warm the plans
    COMMIT;
    t0 := clock_timestamp();
    FOR i IN 1..n LOOP
        PERFORM orchestrator.claim('bench_claim', ids, cts, runs);
        COMMIT;
    END LOOP;
    us := extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
    RAISE NOTICE 'claim of % message(s), % cancelled run(s) in the table: % us per claim, % us per message',
        cardinality(ids), (SELECT count(*) FROM orchestrator.cancelled_runs),
        round(us::numeric, 1), round((us / cardinality(ids))::numeric, 2);
END
$$;
DELETE FROM orchestrator.cancelled_runs WHERE pipeline = 'bench_claim';
