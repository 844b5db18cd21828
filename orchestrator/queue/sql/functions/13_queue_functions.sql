-- Per-queue functions: the hot operations of one queue as static SQL.
--
-- Why. A pgmq.* function builds its statement from the queue name and runs it with EXECUTE,
-- which parses, analyses and plans it on every call: for read() that is most of the call's
-- time inside the server (pg_stat_statements and EXPLAIN (SUMMARY) show planning at 2-3 times
-- the execution of a one-message read). PL/pgSQL caches the plan of a static statement for the
-- session, so a function whose statements name one queue's tables plans them once.
--
-- What. Each queue gets, in schema pgmq_ext, one function per operation, named
-- "<operation>:<queue>" (a colon never occurs in a queue name nor in the layer's helpers):
--   read:<q>(vt integer, qty integer, conditional jsonb)      -> setof message_record
--   pop:<q>(qty integer)                                      -> setof message_record
--   delete:<q>(msg_id bigint) -> boolean,  delete_many:<q>(msg_ids bigint[]) -> setof bigint
--   archive:<q>(msg_id bigint) -> boolean, archive_many:<q>(msg_ids bigint[]) -> setof bigint
--   send:<q>(vt timestamptz, msg jsonb, headers jsonb)        -> bigint
--   send_batch:<q>(vt timestamptz, msgs jsonb[], headers jsonb[]) -> setof bigint
-- The public signatures (pgmq.read(queue_name, vt, qty, conditional), ...) stay as they are:
-- after checking their arguments they look the queue's function up (pgmq_ext.queue_function:
-- one syscache probe) and call it with a one-line EXECUTE, whose planning is a fraction of the
-- statement's. A queue without its functions (none yet, or a name that is no queue) takes the
-- dynamic path, which raises what it always raised; the functions are an accelerator, the
-- dynamic statements remain the reference (pgmq_ext.statements() is built from them too).
--
-- When. pgmq.create*() makes them under the queue's lock, drop_queue() drops them, adoption
-- makes them for the queues it brings back, and applying these function files (an install or
-- upgrade whose functions changed) makes them anew for every queue, so they always match the
-- generator below. Names are quoted with format('%I') and the bodies passed as literals
-- (format('%L')); queue names are validated when a queue is created.

-- The quoted, schema-qualified name of a queue's function for `operation`.
CREATE OR REPLACE FUNCTION pgmq_ext.queue_function_name(queue_name text, operation text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'pgmq_ext.' || quote_ident(operation || ':' || lower(queue_name COLLATE "C"));

-- That name when the function exists, else NULL (no such queue, or a queue without its
-- functions): the dispatch of every fast path. Inlined into the caller; to_regproc is one
-- catalog cache probe.
CREATE OR REPLACE FUNCTION pgmq_ext.queue_function(queue_name text, operation text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
    WHEN length(queue_name) <= 47
     AND to_regproc(pgmq_ext.queue_function_name(queue_name, operation)) IS NOT NULL
    THEN pgmq_ext.queue_function_name(queue_name, operation)
END;

-- The CREATE FUNCTION statements of queue `qname` (stored form). `%1$s` in a body is the
-- queue table, `%2$s` the archive, `%3$s` the columns of a message row.
CREATE OR REPLACE FUNCTION pgmq_ext.queue_function_ddl(qname text)
RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    SELECT format(
        'CREATE OR REPLACE FUNCTION %s(%s) RETURNS %s LANGUAGE plpgsql AS %L',
        pgmq_ext.queue_function_name(qname, f.operation), f.arguments, f.result,
        format(f.body, 'pgmq.' || quote_ident('q_' || qname), 'pgmq.' || quote_ident('a_' || qname),
               'msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers'))
      FROM (VALUES
        -- read(): the same statements as pgmq_ext.read_sql(), one per shape (one message or
        -- several, with or without a condition), so each keeps a plan of its own.
        ('read', '_vt integer, _qty integer, _conditional jsonb', 'SETOF pgmq.message_record', $body$
DECLARE
    now_ts timestamptz := clock_timestamp();
    until timestamptz := now_ts + make_interval(secs => _vt);
BEGIN
    IF _conditional IS NULL OR _conditional = '{}' THEN
        IF _qty = 1 THEN
            RETURN QUERY UPDATE %1$s q SET vt = until, read_ct = q.read_ct + 1, last_read_at = now_ts
             WHERE q.msg_id = ANY (ARRAY(SELECT s.msg_id FROM %1$s s WHERE s.vt <= now_ts
                                  ORDER BY s.msg_id LIMIT 1 FOR UPDATE SKIP LOCKED))
            RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers;
        ELSE
            RETURN QUERY WITH r AS (
                UPDATE %1$s q SET vt = until, read_ct = q.read_ct + 1, last_read_at = now_ts
                 WHERE q.msg_id = ANY (ARRAY(SELECT s.msg_id FROM %1$s s WHERE s.vt <= now_ts
                                      ORDER BY s.msg_id LIMIT _qty FOR UPDATE SKIP LOCKED))
                RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers)
            SELECT %3$s FROM r ORDER BY r.msg_id;
        END IF;
    ELSIF _qty = 1 THEN
        RETURN QUERY UPDATE %1$s q SET vt = until, read_ct = q.read_ct + 1, last_read_at = now_ts
         WHERE q.msg_id = ANY (ARRAY(SELECT s.msg_id FROM %1$s s
                              WHERE s.vt <= now_ts AND s.message @> _conditional
                              ORDER BY s.msg_id LIMIT 1 FOR UPDATE SKIP LOCKED))
        RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers;
    ELSE
        RETURN QUERY WITH r AS (
            UPDATE %1$s q SET vt = until, read_ct = q.read_ct + 1, last_read_at = now_ts
             WHERE q.msg_id = ANY (ARRAY(SELECT s.msg_id FROM %1$s s
                                  WHERE s.vt <= now_ts AND s.message @> _conditional
                                  ORDER BY s.msg_id LIMIT _qty FOR UPDATE SKIP LOCKED))
            RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers)
        SELECT %3$s FROM r ORDER BY r.msg_id;
    END IF;
END
$body$),
        ('pop', '_qty integer', 'SETOF pgmq.message_record', $body$
DECLARE
    now_ts timestamptz := clock_timestamp();
BEGIN
    IF _qty = 1 THEN
        RETURN QUERY DELETE FROM %1$s q
         WHERE q.msg_id = ANY (ARRAY(SELECT s.msg_id FROM %1$s s WHERE s.vt <= now_ts
                              ORDER BY s.msg_id LIMIT 1 FOR UPDATE SKIP LOCKED))
        RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers;
    ELSE
        RETURN QUERY WITH r AS (
            DELETE FROM %1$s q
             WHERE q.msg_id = ANY (ARRAY(SELECT s.msg_id FROM %1$s s WHERE s.vt <= now_ts
                                  ORDER BY s.msg_id LIMIT _qty FOR UPDATE SKIP LOCKED))
            RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers)
        SELECT %3$s FROM r ORDER BY r.msg_id;
    END IF;
END
$body$),
        ('delete', '_msg_id bigint', 'boolean', $body$
BEGIN
    DELETE FROM %1$s q WHERE q.msg_id = _msg_id;
    RETURN FOUND;
END
$body$),
        ('delete_many', '_msg_ids bigint[]', 'SETOF bigint', $body$
BEGIN
    RETURN QUERY DELETE FROM %1$s q WHERE q.msg_id = ANY (_msg_ids) RETURNING q.msg_id;
END
$body$),
        -- archive(): the queue table is locked before the archive (see 08_partitions.sql).
        ('archive', '_msg_id bigint', 'boolean', $body$
BEGIN
    WITH moved AS (
        DELETE FROM %1$s q WHERE q.msg_id = _msg_id
        RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers)
    INSERT INTO %2$s (%3$s) SELECT %3$s FROM moved;
    RETURN FOUND;
END
$body$),
        ('archive_many', '_msg_ids bigint[]', 'SETOF bigint', $body$
BEGIN
    RETURN QUERY WITH moved AS (
        DELETE FROM %1$s q WHERE q.msg_id = ANY (_msg_ids)
        RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers)
    INSERT INTO %2$s AS a (%3$s) SELECT %3$s FROM moved RETURNING a.msg_id;
END
$body$),
        ('send', '_vt timestamptz, _msg jsonb, _headers jsonb', 'bigint', $body$
DECLARE
    id bigint;
BEGIN
    INSERT INTO %1$s (vt, message, headers) VALUES (_vt, _msg, _headers) RETURNING msg_id INTO id;
    RETURN id;
END
$body$),
        ('send_batch', '_vt timestamptz, _msgs jsonb[], _headers jsonb[]', 'SETOF bigint', $body$
BEGIN
    RETURN QUERY INSERT INTO %1$s AS q (vt, message, headers)
        SELECT _vt, m.message, m.headers FROM unnest(_msgs, _headers) AS m (message, headers)
        RETURNING q.msg_id;
END
$body$)
      ) AS f (operation, arguments, result, body)
$$;

-- Make (or make anew) the functions of a queue, under the queue's lock, if it exists then: a
-- drop that commits first leaves no functions behind.
CREATE OR REPLACE FUNCTION pgmq_ext.create_queue_functions(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    qname text := pgmq_ext.queue_name(queue_name);
    statement text;
BEGIN
    PERFORM pgmq_ext.lock_queue(qname);
    IF NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = qname) THEN
        RETURN;
    END IF;
    FOR statement IN SELECT pgmq_ext.queue_function_ddl(qname) LOOP
        EXECUTE statement;
    END LOOP;
END
$$;

-- Make every queue's functions anew (after the function files were applied). A queue whose
-- functions belong to a role the installing role cannot act for keeps them, with a NOTICE
-- (run the install as the queues' owner to refresh them).
CREATE OR REPLACE FUNCTION pgmq_ext.create_all_queue_functions()
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    qname text;
BEGIN
    FOR qname IN SELECT m.queue_name FROM pgmq.meta m ORDER BY m.queue_name LOOP
        BEGIN
            PERFORM pgmq_ext.create_queue_functions(qname);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'the functions of queue "%" were left as they were: %', qname, SQLERRM;
        END;
    END LOOP;
END
$$;

-- Drop the functions of a queue (those that exist).
CREATE OR REPLACE FUNCTION pgmq_ext.drop_queue_functions(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
               WHERE p.pronamespace = 'pgmq_ext'::regnamespace
                 AND split_part(p.proname, ':', 2) = lower(queue_name COLLATE "C") LOOP
        EXECUTE format('DROP FUNCTION %s', fn);
    END LOOP;
END
$$;

-- Every queue's functions, as this version of the generator writes them.
SELECT pgmq_ext.create_all_queue_functions();
