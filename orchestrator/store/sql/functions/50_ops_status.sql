-- Read models of `orchestrator status` (package orchestrator.ops): what is in one queue, how
-- old it is, what happened to it recently, and how big its tables are.
--
-- Queue names reach dynamic SQL only through format('%I'); a queue that does not exist (any
-- more) yields no row rather than an error, so one dropped queue cannot break a status screen.

-- A timestamp from text, NULL when it does not parse: headers are written by programs, but one
-- malformed value must not make a read model fail.
CREATE OR REPLACE FUNCTION orchestrator.ops_timestamp(value text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN value::timestamptz;
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END
$$;

-- Failed attempts recorded in a message's headers (`errors`: [{"attempt", "type", "message",
-- "at"}, ...]) at or after `since`.
CREATE OR REPLACE FUNCTION orchestrator.ops_errors_since(headers jsonb, since timestamptz)
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
    WHEN jsonb_typeof(headers -> 'errors') = 'array' THEN
        (SELECT count(*)::integer
           FROM jsonb_array_elements(headers -> 'errors') AS e (entry)
          WHERE jsonb_typeof(e.entry) = 'object'
            AND orchestrator.ops_timestamp(e.entry ->> 'at') >= since)
    ELSE 0
END;

-- True when a message's latest attempt failed and it waits for its retry: the last recorded
-- error belongs to the attempt that read it last (`read_ct`).
CREATE OR REPLACE FUNCTION orchestrator.ops_retrying(headers jsonb, read_ct integer)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN jsonb_typeof(headers -> 'errors' -> -1 -> 'attempt') = 'number' THEN
        (headers -> 'errors' -> -1 ->> 'attempt')::numeric >= read_ct
    ELSE false
END;

-- The tables holding a relation's rows: itself, or every leaf partition of a partitioned table.
CREATE OR REPLACE FUNCTION orchestrator.ops_leaf_tables(rel regclass)
RETURNS SETOF regclass
LANGUAGE sql STABLE
AS $$
    SELECT rel
     WHERE (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = rel) <> 'p'
    UNION ALL
    SELECT t.relid FROM pg_catalog.pg_partition_tree(rel) t WHERE t.isleaf AND t.relid <> rel
$$;

-- The size of a queue's table (every partition of a partitioned queue: tables, indexes and
-- TOAST) and its live and dead tuples from the statistics collector, without counting a
-- message: what `status` shows of a dead-letter queue, whose depth per step it counts itself.
-- No row when the queue does not exist.
CREATE OR REPLACE FUNCTION orchestrator.ops_queue_table_numbers(queue_name text)
RETURNS TABLE (table_bytes bigint, live_tuples bigint, dead_tuples bigint)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    q regclass := to_regclass('pgmq.' || quote_ident('q_' || lower(queue_name COLLATE "C")));
BEGIN
    IF q IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT coalesce(sum(pg_catalog.pg_total_relation_size(t.rel)), 0)::bigint,
           coalesce(sum(s.n_live_tup), 0)::bigint,
           coalesce(sum(s.n_dead_tup), 0)::bigint
      FROM orchestrator.ops_leaf_tables(q) AS t (rel)
      LEFT JOIN pg_catalog.pg_stat_user_tables s ON s.relid = t.rel;
END
$$;

-- One queue at a glance. Messages are split by state: visible (vt passed), in flight (read,
-- lease running), retrying (last attempt failed, waiting for the backoff), delayed (never read,
-- not yet visible). `failures` counts failed attempts since `since` in the queue and in what
-- the archive received since then; `handed_off` counts archive rows since `since`. Sizes sum
-- every partition of a partitioned queue (tables, indexes and TOAST); tuple counts come from
-- the statistics collector and lag behind by up to a second or so.
CREATE OR REPLACE FUNCTION orchestrator.ops_queue_stats(queue_name text, since timestamptz)
RETURNS TABLE (
    waiting bigint,
    visible bigint,
    in_flight bigint,
    retrying bigint,
    delayed bigint,
    oldest_enqueued_at timestamptz,
    failures bigint,
    handed_off bigint,
    table_bytes bigint,
    archive_bytes bigint,
    live_tuples bigint,
    dead_tuples bigint,
    measured_at timestamptz
)
LANGUAGE plpgsql
AS $$
DECLARE
    qname text := lower(queue_name COLLATE "C");
    q regclass := to_regclass('pgmq.' || quote_ident('q_' || qname));
    a regclass := to_regclass('pgmq.' || quote_ident('a_' || qname));
    now_ts timestamptz := clock_timestamp();
    archived_failures bigint := 0;
BEGIN
    IF q IS NULL THEN
        RETURN;
    END IF;
    measured_at := now_ts;
    EXECUTE format(
        'SELECT count(*),'
        ' count(*) FILTER (WHERE vt <= $1),'
        ' count(*) FILTER (WHERE vt > $1 AND read_ct > 0 AND NOT orchestrator.ops_retrying(headers, read_ct)),'
        ' count(*) FILTER (WHERE vt > $1 AND read_ct > 0 AND orchestrator.ops_retrying(headers, read_ct)),'
        ' count(*) FILTER (WHERE vt > $1 AND read_ct = 0),'
        ' min(enqueued_at),'
        ' coalesce(sum(orchestrator.ops_errors_since(headers, $2)), 0)'
        ' FROM pgmq.%I', 'q_' || qname)
        INTO waiting, visible, in_flight, retrying, delayed, oldest_enqueued_at, failures
        USING now_ts, since;
    handed_off := 0;
    archive_bytes := 0;
    IF a IS NOT NULL THEN
        EXECUTE format(
            'SELECT count(*), coalesce(sum(orchestrator.ops_errors_since(headers, $1)), 0)'
            ' FROM pgmq.%I WHERE archived_at >= $1', 'a_' || qname)
            INTO handed_off, archived_failures
            USING since;
        SELECT coalesce(sum(pg_catalog.pg_total_relation_size(t.rel)), 0)
          INTO archive_bytes
          FROM orchestrator.ops_leaf_tables(a) AS t (rel);
    END IF;
    failures := failures + archived_failures;
    SELECT n.table_bytes, n.live_tuples, n.dead_tuples
      INTO table_bytes, live_tuples, dead_tuples
      FROM orchestrator.ops_queue_table_numbers(queue_name) AS n;
    RETURN NEXT;
END
$$;

-- Dead letters of one dead-letter queue per failed step: how many, how many arrived since
-- `since`, and the failed attempts since `since` they record (the runtime keeps each attempt's
-- error in the dead letter's original headers, the last one included; a dead letter without
-- that history counts once). The step is the dead letter's `step` (body), else its header.
CREATE OR REPLACE FUNCTION orchestrator.ops_dead_letter_counts(queue_name text, since timestamptz)
RETURNS TABLE (step text, depth bigint, recent bigint, recent_failures bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    qname text := lower(queue_name COLLATE "C");
BEGIN
    IF to_regclass('pgmq.' || quote_ident('q_' || qname)) IS NULL THEN
        RETURN;
    END IF;
    -- Each row is reduced to its step and recent failures before grouping (OFFSET 0 keeps the
    -- subquery apart): without statistics on the step the planner may sort for the GROUP BY,
    -- and sorting whole dead letters (payload, headers, traceback) spills to disk.
    RETURN QUERY EXECUTE format(
        'SELECT step, count(*), count(*) FILTER (WHERE recent),'
        ' coalesce(sum(failures) FILTER (WHERE recent), 0)::bigint'
        ' FROM (SELECT coalesce(message ->> ''step'', headers ->> ''step'') AS step,'
        '              enqueued_at >= $1 AS recent,'
        '              CASE WHEN enqueued_at >= $1 THEN'
        '                   greatest(orchestrator.ops_errors_since(message -> ''headers'', $1), 1)'
        '              END AS failures'
        '         FROM pgmq.%I OFFSET 0) AS d'
        ' GROUP BY 1', 'q_' || qname)
        USING since;
END
$$;
