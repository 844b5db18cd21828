-- Read model of flow control for `orchestrator status` and `trace` (package orchestrator.ops).

-- Per step of the applied pipelines `names` (all when NULL): whether it is paused (since
-- when, by whom), its rate limit and the tokens its bucket holds now, its max_in_flight and
-- the slots held now, its group key and its backpressure cap. Read from the applied specs and
-- the flow-control tables; no queue is touched.
CREATE OR REPLACE FUNCTION orchestrator.ops_flow(names text[])
RETURNS TABLE (
    pipeline text,
    step text,
    paused_since timestamptz,
    paused_by text,
    rate text,
    bucket text,
    tokens double precision,
    max_in_flight integer,
    in_flight integer,
    group_by text,
    max_waiting integer
)
LANGUAGE sql STABLE
AS $$
    SELECT f.pipeline, f.step, ps.paused_at, ps.paused_by, f.rate, f.bucket,
           (SELECT orchestrator.bucket_level(b.tokens, b.updated_at, b.rate, b.burst, clock_timestamp())
              FROM orchestrator.rate_buckets b WHERE b.name = f.bucket),
           f.max_in_flight,
           CASE WHEN f.max_in_flight IS NOT NULL
                THEN orchestrator.slots_held(f.pipeline || '.' || f.step) END,
           f.group_by, f.max_waiting
      FROM (SELECT p.name AS pipeline, s.key AS step,
                   s.value #>> '{rate_limit,rate}' AS rate,
                   CASE WHEN jsonb_typeof(s.value -> 'rate_limit') = 'object'
                        THEN coalesce(s.value #>> '{rate_limit,name}', p.name || '.' || s.key) END AS bucket,
                   (s.value ->> 'max_in_flight')::integer AS max_in_flight,
                   s.value ->> 'group_by' AS group_by,
                   (s.value ->> 'max_waiting')::integer AS max_waiting
              FROM orchestrator.pipelines p, jsonb_each(p.spec -> 'steps') AS s
             WHERE names IS NULL OR p.name = ANY (names)) AS f
      LEFT JOIN LATERAL (
          SELECT min(x.paused_at) AS paused_at, min(x.paused_by) AS paused_by
            FROM orchestrator.paused_steps x
           WHERE x.pipeline = f.pipeline AND x.step IN (f.step, '')) AS ps ON true
     ORDER BY f.pipeline, f.step
$$;

-- Cancelled runs per applied pipeline of `names` (all when NULL).
CREATE OR REPLACE FUNCTION orchestrator.ops_cancelled_counts(names text[])
RETURNS TABLE (pipeline text, cancelled bigint)
LANGUAGE sql STABLE
AS $$
    SELECT c.pipeline, count(*) FROM orchestrator.cancelled_runs c
     WHERE names IS NULL OR c.pipeline = ANY (names)
     GROUP BY c.pipeline
$$;
