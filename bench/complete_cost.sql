-- What a batch's complete() costs in the server, per call and per message, for a step that
-- hands off to one successor and publishes with the routing keys `publish` (empty: none):
--
--   psql "$DSN" -v batch=1 -v iterations=3000 -v publish= -f bench/complete_cost.sql
--   psql "$DSN" -v batch=1 -v iterations=3000 -v publish=orders.created -f bench/complete_cost.sql
--
-- on a database where pipeline `bc` (steps a -> b) was applied (and, to publish somewhere,
-- pipelines subscribing to the key). Two databases on one server, each applied from its own
-- checkout, compare two versions of complete(): run the file in each in turn. complete()
-- before topics takes 16 arguments; the file calls whichever the database has. Each
-- iteration sends `batch` messages to bc__a, reads them and completes them in a transaction
-- of its own (COMMIT in the loop); only the complete() calls are timed.
\set ON_ERROR_STOP on
\set QUIET on
TRUNCATE pgmq.q_bc__a, pgmq.a_bc__a, pgmq.q_bc__b;
SELECT set_config('bench.iterations', :'iterations', false),
       set_config('bench.batch', :'batch', false),
       set_config('bench.publish', :'publish', false) \gset
\set QUIET off
DO $$
DECLARE
    n integer := current_setting('bench.iterations')::integer;
    size integer := current_setting('bench.batch')::integer;
    keys text[] := nullif(string_to_array(current_setting('bench.publish'), ','), '{}');
    topics boolean := to_regprocedure('orchestrator.publish(text, text, text[], bigint[], uuid[], jsonb[])') IS NOT NULL;
    routes jsonb := '[{"step": "b", "delay": 0, "expects": null}]';
    ids bigint[];
    cts integer[];
    runs uuid[];
    outputs jsonb[];
    t0 timestamptz;
    spent interval := '0';
    us double precision;
BEGIN
    IF keys IS NOT NULL AND NOT topics THEN
        RAISE EXCEPTION 'this database has no topics: run it with -v publish=';
    END IF;
    FOR i IN 0..n LOOP
        PERFORM pgmq.send_batch('bc__a', ARRAY(SELECT '{"x": 1}'::jsonb FROM generate_series(1, size)),
                                ARRAY(SELECT jsonb_build_object('run_id', gen_random_uuid())
                                        FROM generate_series(1, size)));
        SELECT array_agg(r.msg_id ORDER BY r.msg_id), array_agg(r.read_ct ORDER BY r.msg_id),
               array_agg((r.headers ->> 'run_id')::uuid ORDER BY r.msg_id),
               array_agg(r.message ORDER BY r.msg_id)
          INTO ids, cts, runs, outputs
          FROM pgmq.read('bc__a', 3600, size) AS r;
        t0 := clock_timestamp();
        IF topics THEN
            PERFORM orchestrator.complete('bc', 'a', routes, true, 'bc_dlq', ids, cts, runs, outputs,
                                          '{}', '{}', '{}', '{}', '{}', '{}', '{}', keys);
        ELSE
            PERFORM orchestrator.complete('bc', 'a', routes, true, 'bc_dlq', ids, cts, runs, outputs,
                                          '{}', '{}', '{}', '{}', '{}', '{}', '{}');
        END IF;
        IF i > 0 THEN  -- the first call warms the plans
            spent := spent + (clock_timestamp() - t0);
        END IF;
        COMMIT;
    END LOOP;
    us := extract(epoch FROM spent) * 1e6 / n;
    RAISE NOTICE 'complete() of % message(s), publish %: % us per call, % us per message',
        size, coalesce(keys::text, 'none'), round(us::numeric, 1), round((us / size)::numeric, 2);
END
$$;
