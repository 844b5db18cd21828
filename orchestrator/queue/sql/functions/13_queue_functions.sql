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
--   read_many:<q>, pop_many:<q>: the same, for several messages (below)
--   set_vt:<q>(msg_id bigint, vt timestamptz)                 -> setof message_record
--   set_vt_many:<q>(msg_ids bigint[], vt timestamptz)         -> setof message_record
--   delete:<q>(msg_id bigint) -> boolean,  delete_many:<q>(msg_ids bigint[]) -> setof bigint
--   archive:<q>(msg_id bigint) -> boolean, archive_many:<q>(msg_ids bigint[]) -> setof bigint
--   send:<q>(vt timestamptz, msg jsonb, headers jsonb)        -> bigint
--   send_batch:<q>(vt timestamptz, msgs jsonb[], headers jsonb[]) -> setof bigint
--   lock_owned:<q>(msg_id bigint, read_ct integer) -> boolean
--   move_owned:<q>(msg_id bigint, read_ct integer, archive boolean) -> (owned, moved_headers)
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

-- The head of a queue for a read or pop of `qty` messages: msg_ids below the returned bound,
-- `lo` being the lowest msg_id in the queue.
--
-- Why. A cached plan is generic: it cannot see how many messages are visible. Its shape for a
-- read (the primary key in msg_id order, visible messages kept, LIMIT) is the best one while
-- the oldest messages are visible, but when the oldest thousands are in flight or delayed it
-- walks all of them on every call (measured: 20-40 ms a read instead of 0.2 ms with 99,950
-- of 100,000 messages hidden), where a plan made for the call takes the vt index instead. So
-- the queue functions run their cached statement over the head only (a range of the primary
-- key: at most this many index entries whatever the queue holds) and, when the head did not
-- give `qty` visible messages and the queue goes on beyond it, the rest with a statement
-- planned for the call, as the dynamic path plans every read. The head is wide enough for
-- ten readers' messages in flight at once, so in a queue being worked the cached statement
-- does the read alone.
CREATE OR REPLACE FUNCTION pgmq_ext.queue_head(lo bigint, qty integer)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN lo + 1000 + 10 * qty::bigint;

-- The pick of a queue function's read or pop: an array of the msg_ids of up to `lim` (SQL:
-- a constant or a variable) oldest visible messages of the head, locked, SKIP LOCKED. One
-- probe of the primary key finds the lowest msg_id, then a range of it is walked. Variables
-- of the function body: now_ts, _conditional (NULL: no condition).
CREATE OR REPLACE FUNCTION pgmq_ext.queue_pick(qname text, lim text)
RETURNS text
LANGUAGE sql IMMUTABLE
RETURN format(
    'ARRAY(SELECT t.msg_id FROM (SELECT min(m.msg_id) AS lo FROM %1$s m) h'
    ' CROSS JOIN LATERAL (SELECT s.msg_id FROM %1$s s'
    ' WHERE s.msg_id >= h.lo AND s.msg_id < pgmq_ext.queue_head(h.lo, %2$s) AND s.vt <= now_ts'
    ' AND (_conditional IS NULL OR s.message @> _conditional)'
    ' ORDER BY s.msg_id LIMIT %2$s FOR UPDATE SKIP LOCKED) t)',
    'pgmq.' || quote_ident('q_' || qname), lim);

-- Queues partitioned by msg_id. A read of the head must not open every partition: the
-- lowest msg_id of a partitioned table is a Merge Append over the head of every partition (the
-- default partition rules out an ordered Append), and `msg_id = ANY (array)` prunes nothing
-- unless the array is a constant. So the functions of such a queue (queue_function_ddl) find
-- the lowest msg_id first, then bound every statement by a msg_id range in PL/pgSQL variables:
-- PostgreSQL prunes the partitions outside it when it starts the statement (generic plans:
-- "Subplans Removed") or when it plans it (custom plans), the UPDATE or DELETE as its pick.
--
-- The lowest msg_id is looked for below a hint first: the end of the partition (bin) where
-- this session last found it, in the setting `pgmq_ext.queue_low_setting(queue)`. A
-- minimum found below the hint is the queue's minimum, and only the partitions below the hint
-- (those of the head and the emptied ones not yet past retention) are opened; when none is
-- found there (the head moved on, or a new session), the minimum of the whole table is taken
-- once and the hint moved. The hint only saves work: a wrong or missing one gives the same
-- answer, so it may be reset, rolled back or shared with any queue of the same name (a read
-- whose transaction rolls back takes the hint back with it, and the next read of the session
-- looks at the whole table again).

-- The partition interval of queue `qname` when it is partitioned by msg_id, else NULL.
CREATE OR REPLACE FUNCTION pgmq_ext.msg_id_interval(qname text)
RETURNS bigint
LANGUAGE sql STABLE
RETURN (SELECT c.id_interval FROM pgmq_ext.partition_config c
         WHERE c.queue_name = qname AND c.partition_by = 'msg_id');

-- The name of the session setting that holds the hint of queue `qname`.
CREATE OR REPLACE FUNCTION pgmq_ext.queue_low_setting(qname text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'pgmq_ext.low_' || md5(qname);

-- PL/pgSQL that sets the variable `lo` to the lowest msg_id of a queue partitioned by msg_id
-- in partitions of `id_interval` (NULL when the queue is empty), as above. Uses the variable
-- `hint bigint`.
CREATE OR REPLACE FUNCTION pgmq_ext.queue_low(qname text, id_interval bigint)
RETURNS text
LANGUAGE sql IMMUTABLE
RETURN format(
    $f$hint := nullif(current_setting(%2$L, true), '')::bigint;
    IF hint IS NOT NULL THEN
        SELECT min(m.msg_id) INTO lo FROM %1$s m WHERE m.msg_id < hint;
    END IF;
    IF lo IS NULL THEN
        SELECT min(m.msg_id) INTO lo FROM %1$s m;
        IF lo IS NOT NULL THEN
            PERFORM set_config(%2$L, ((lo / %3$s + 1) * %3$s)::text, false);
        END IF;
    END IF;$f$,
    'pgmq.' || quote_ident('q_' || qname), pgmq_ext.queue_low_setting(qname), id_interval);

-- The bodies of a queue partitioned by msg_id that differ from the others' (see
-- queue_function_ddl for `%N$s`; `%7$s` is pgmq_ext.queue_low). read and pop: the lowest
-- msg_id, then the pick and the UPDATE or DELETE within the head [lo, hi) (pgmq_ext.queue_head),
-- then, when the head gave too few and the queue goes on beyond it, the rest as the other
-- bodies read it. The _many acks: within the range of the ids given.
CREATE OR REPLACE FUNCTION pgmq_ext.queue_function_bodies_by_msg_id()
RETURNS TABLE (operation text, arguments text, result text, body text)
LANGUAGE sql IMMUTABLE
AS $$
    VALUES
        ('read', '_vt integer, _qty integer, _conditional jsonb', 'SETOF pgmq.message_record', $body$
DECLARE
    now_ts timestamptz := clock_timestamp();
    until timestamptz := now_ts + make_interval(secs => _vt);
    got bigint;
    hint bigint;
    lo bigint;
    hi bigint;
BEGIN
    IF _conditional = '{}' THEN
        _conditional := NULL;
    END IF;
    %7$s
    IF lo IS NULL THEN
        RETURN;
    END IF;
    hi := pgmq_ext.queue_head(lo, _qty);
    IF _qty = 1 THEN
        RETURN QUERY UPDATE %1$s q SET vt = until, read_ct = q.read_ct + 1, last_read_at = now_ts
         WHERE q.msg_id >= lo AND q.msg_id < hi
           AND q.msg_id = ANY (ARRAY(SELECT s.msg_id FROM %1$s s
                                WHERE s.msg_id >= lo AND s.msg_id < hi AND s.vt <= now_ts
                                  AND (_conditional IS NULL OR s.message @> _conditional)
                                ORDER BY s.msg_id LIMIT 1 FOR UPDATE SKIP LOCKED))
        RETURNING %6$s;
    ELSE
        RETURN QUERY WITH r AS (
            UPDATE %1$s q SET vt = until, read_ct = q.read_ct + 1, last_read_at = now_ts
             WHERE q.msg_id >= lo AND q.msg_id < hi
               AND q.msg_id = ANY (ARRAY(SELECT s.msg_id FROM %1$s s
                                    WHERE s.msg_id >= lo AND s.msg_id < hi AND s.vt <= now_ts
                                      AND (_conditional IS NULL OR s.message @> _conditional)
                                    ORDER BY s.msg_id LIMIT _qty FOR UPDATE SKIP LOCKED))
            RETURNING %6$s)
        SELECT %3$s FROM r ORDER BY r.msg_id;
    END IF;
    GET DIAGNOSTICS got = ROW_COUNT;
    -- Two IFs: a condition's subquery is started (its partitions opened) with the condition.
    IF got < _qty THEN
        IF EXISTS (SELECT FROM %1$s m WHERE m.msg_id >= hi) THEN
            RETURN QUERY EXECUTE $f$WITH r AS (
            UPDATE %1$s q SET vt = $2, read_ct = q.read_ct + 1, last_read_at = $1
             WHERE q.msg_id = ANY (ARRAY(SELECT s.msg_id FROM %1$s s
                                  WHERE s.msg_id >= $5 AND s.vt <= $1
                                    AND s.last_read_at IS DISTINCT FROM $1
                                    AND ($4::jsonb IS NULL OR s.message @> $4::jsonb)
                                  ORDER BY s.msg_id LIMIT $3 FOR UPDATE SKIP LOCKED))
            RETURNING %6$s)
            SELECT %3$s FROM r ORDER BY r.msg_id$f$
            USING now_ts, until, _qty - got, _conditional, hi;
        END IF;
    END IF;
END
$body$),
        ('pop', '_qty integer', 'SETOF pgmq.message_record', $body$
DECLARE
    now_ts timestamptz := clock_timestamp();
    got bigint;
    hint bigint;
    lo bigint;
    hi bigint;
BEGIN
    %7$s
    IF lo IS NULL THEN
        RETURN;
    END IF;
    hi := pgmq_ext.queue_head(lo, _qty);
    IF _qty = 1 THEN
        RETURN QUERY DELETE FROM %1$s q
         WHERE q.msg_id >= lo AND q.msg_id < hi
           AND q.msg_id = ANY (ARRAY(SELECT s.msg_id FROM %1$s s
                                WHERE s.msg_id >= lo AND s.msg_id < hi AND s.vt <= now_ts
                                ORDER BY s.msg_id LIMIT 1 FOR UPDATE SKIP LOCKED))
        RETURNING %6$s;
    ELSE
        RETURN QUERY WITH r AS (
            DELETE FROM %1$s q
             WHERE q.msg_id >= lo AND q.msg_id < hi
               AND q.msg_id = ANY (ARRAY(SELECT s.msg_id FROM %1$s s
                                    WHERE s.msg_id >= lo AND s.msg_id < hi AND s.vt <= now_ts
                                    ORDER BY s.msg_id LIMIT _qty FOR UPDATE SKIP LOCKED))
            RETURNING %6$s)
        SELECT %3$s FROM r ORDER BY r.msg_id;
    END IF;
    GET DIAGNOSTICS got = ROW_COUNT;
    IF got < _qty THEN
        IF EXISTS (SELECT FROM %1$s m WHERE m.msg_id >= hi) THEN
            RETURN QUERY EXECUTE $f$WITH r AS (
            DELETE FROM %1$s q
             WHERE q.msg_id = ANY (ARRAY(SELECT s.msg_id FROM %1$s s
                                  WHERE s.msg_id >= $3 AND s.vt <= $1
                                  ORDER BY s.msg_id LIMIT $2 FOR UPDATE SKIP LOCKED))
            RETURNING %6$s)
            SELECT %3$s FROM r ORDER BY r.msg_id$f$
            USING now_ts, _qty - got, hi;
        END IF;
    END IF;
END
$body$),
        ('delete_many', '_msg_ids bigint[]', 'SETOF bigint', $body$
DECLARE
    lo bigint := (SELECT min(i) FROM unnest(_msg_ids) i);
    hi bigint := (SELECT max(i) FROM unnest(_msg_ids) i);
BEGIN
    RETURN QUERY DELETE FROM %1$s q
     WHERE q.msg_id >= lo AND q.msg_id <= hi AND q.msg_id = ANY (_msg_ids) RETURNING q.msg_id;
END
$body$),
        ('archive_many', '_msg_ids bigint[]', 'SETOF bigint', $body$
DECLARE
    lo bigint := (SELECT min(i) FROM unnest(_msg_ids) i);
    hi bigint := (SELECT max(i) FROM unnest(_msg_ids) i);
BEGIN
    RETURN QUERY WITH moved AS (
        DELETE FROM %1$s q
         WHERE q.msg_id >= lo AND q.msg_id <= hi AND q.msg_id = ANY (_msg_ids)
        RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers)
    INSERT INTO %2$s AS a (%3$s) SELECT %3$s FROM moved RETURNING a.msg_id;
END
$body$),
        ('set_vt_many', '_msg_ids bigint[], _vt timestamptz', 'SETOF pgmq.message_record', $body$
DECLARE
    lo bigint := (SELECT min(i) FROM unnest(_msg_ids) i);
    hi bigint := (SELECT max(i) FROM unnest(_msg_ids) i);
BEGIN
    RETURN QUERY UPDATE %1$s q SET vt = _vt
     WHERE q.msg_id >= lo AND q.msg_id <= hi AND q.msg_id = ANY (_msg_ids)
        RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers;
END
$body$)
$$;

-- What a set_vt() overload runs with $1 msg_id or msg_ids and $2 the new vt: the queue's own
-- function ("set_vt:<q>", "set_vt_many:<q>") when it has one, else the dynamic UPDATE
-- (pgmq_ext.set_vt_sql, 04_read.sql).
CREATE OR REPLACE FUNCTION pgmq_ext.set_vt_statement(queue_name text, many boolean)
RETURNS text
LANGUAGE sql STABLE
RETURN CASE
    WHEN many THEN coalesce('SELECT * FROM ' || pgmq_ext.queue_function(queue_name, 'set_vt_many')
                            || '($1, $2)', pgmq_ext.set_vt_sql(queue_name, true))
    ELSE coalesce('SELECT * FROM ' || pgmq_ext.queue_function(queue_name, 'set_vt') || '($1, $2)',
                  pgmq_ext.set_vt_sql(queue_name, false))
END;

-- The CREATE FUNCTION statements of queue `qname` (stored form). `%1$s` in a body is the
-- queue table, `%2$s` the archive, `%3$s` the columns of a message row.
--
-- read and pop come twice: "read:<q>" for one message (a constant LIMIT 1) and
-- "read_many:<q>" for several. A
-- LIMIT parameter makes the generic plan look dearer than a custom one (the planner assumes
-- a tenth of the table), so left alone the plan cache plans such a statement anew on every
-- call; read_many and pop_many therefore run with plan_cache_mode = force_generic_plan. The
-- generic plan walks the primary key in msg_id order within the head of the queue
-- (pgmq_ext.queue_head), so its cost is bounded whatever the parameters; the statement for
-- what lies beyond the head is run with EXECUTE, planned for the call whatever the setting.
-- delete_many, archive_many and set_vt_many run with the same setting: an array parameter
-- (msg_id = ANY (_msg_ids)) is priced per element in a custom plan, and the plan cache kept
-- planning them on every call (pg_stat_statements: one plan per call at 1, 10 and 100 ids;
-- the generic plan is the same primary-key probe of each id). Not for a queue partitioned by
-- time: there only a plan made for the ids prunes the partitions that cannot hold them (a
-- generic plan probes every partition's primary key). A queue partitioned by msg_id runs every
-- function with a generic plan: its bodies bound each statement by a msg_id range, which a
-- generic plan prunes when it starts.
-- The one-message read and pop run with it too: on a large queue whose statistics the
-- planner trusts, the plan cache priced the custom plan of their UPDATE (DELETE) below the
-- generic one and planned it anew on every call (pg_stat_statements, one plan per call:
-- 80 us of planning for 40 of execution at 1,000,000 waiting; 270 us at 1,000,000 in a queue
-- partitioned by time), while the generic plan is bounded to the head whatever the queue
-- holds. The other one-message functions (primary-key lookups, whose plans the cache keeps)
-- stay without a SET clause, which costs a GUC save and restore on every call (about 5 us).
CREATE OR REPLACE FUNCTION pgmq_ext.queue_function_ddl(qname text)
RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    SELECT format(
        'CREATE OR REPLACE FUNCTION %s(%s) RETURNS %s LANGUAGE plpgsql%s AS %L',
        pgmq_ext.queue_function_name(qname, v.operation), f.arguments, f.result, v.settings,
        format(f.body, 'pgmq.' || quote_ident('q_' || qname), 'pgmq.' || quote_ident('a_' || qname),
               'msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers',
               pgmq_ext.queue_pick(qname, '1'), pgmq_ext.queue_pick(qname, '_qty'),
               'q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers',
               pgmq_ext.queue_low(qname, pgmq_ext.msg_id_interval(qname))))
      FROM (SELECT g.* FROM (VALUES
        -- read(): the statement of pgmq_ext.read_sql() over the head of the queue
        -- (pgmq_ext.queue_head), for one message (%4$s) or several (%5$s), each keeping a
        -- plan of its own; what lies beyond the head is read by a statement planned for the
        -- call, leaving out the messages this call just read (with vt 0 they are visible
        -- again). Without a condition, _conditional is NULL and the pick's filter true.
        ('read', '_vt integer, _qty integer, _conditional jsonb', 'SETOF pgmq.message_record', $body$
DECLARE
    now_ts timestamptz := clock_timestamp();
    until timestamptz := now_ts + make_interval(secs => _vt);
    got bigint;
    lo bigint;
    hi bigint;
BEGIN
    IF _conditional = '{}' THEN
        _conditional := NULL;
    END IF;
    IF _qty = 1 THEN
        RETURN QUERY UPDATE %1$s q SET vt = until, read_ct = q.read_ct + 1, last_read_at = now_ts
         WHERE q.msg_id = ANY (%4$s) RETURNING %6$s;
    ELSE
        RETURN QUERY WITH r AS (
            UPDATE %1$s q SET vt = until, read_ct = q.read_ct + 1, last_read_at = now_ts
             WHERE q.msg_id = ANY (%5$s) RETURNING %6$s)
        SELECT %3$s FROM r ORDER BY r.msg_id;
    END IF;
    GET DIAGNOSTICS got = ROW_COUNT;
    IF got < _qty THEN
        SELECT min(m.msg_id), max(m.msg_id) INTO lo, hi FROM %1$s m;
        IF hi >= pgmq_ext.queue_head(lo, _qty) THEN
            RETURN QUERY EXECUTE $f$WITH r AS (
                UPDATE %1$s q SET vt = $2, read_ct = q.read_ct + 1, last_read_at = $1
                 WHERE q.msg_id = ANY (ARRAY(SELECT s.msg_id FROM %1$s s
                                      WHERE s.msg_id >= $5 AND s.vt <= $1
                                        AND s.last_read_at IS DISTINCT FROM $1
                                        AND ($4::jsonb IS NULL OR s.message @> $4::jsonb)
                                      ORDER BY s.msg_id LIMIT $3 FOR UPDATE SKIP LOCKED))
                RETURNING %6$s)
                SELECT %3$s FROM r ORDER BY r.msg_id$f$
                USING now_ts, until, _qty - got, _conditional, pgmq_ext.queue_head(lo, _qty);
        END IF;
    END IF;
END
$body$),
        ('pop', '_qty integer', 'SETOF pgmq.message_record', $body$
DECLARE
    now_ts timestamptz := clock_timestamp();
    _conditional jsonb;  -- no condition: NULL makes the pick's filter true
    got bigint;
    lo bigint;
    hi bigint;
BEGIN
    IF _qty = 1 THEN
        RETURN QUERY DELETE FROM %1$s q WHERE q.msg_id = ANY (%4$s) RETURNING %6$s;
    ELSE
        RETURN QUERY WITH r AS (DELETE FROM %1$s q WHERE q.msg_id = ANY (%5$s) RETURNING %6$s)
        SELECT %3$s FROM r ORDER BY r.msg_id;
    END IF;
    GET DIAGNOSTICS got = ROW_COUNT;
    IF got < _qty THEN
        SELECT min(m.msg_id), max(m.msg_id) INTO lo, hi FROM %1$s m;
        IF hi >= pgmq_ext.queue_head(lo, _qty) THEN
            RETURN QUERY EXECUTE $f$WITH r AS (
                DELETE FROM %1$s q
                 WHERE q.msg_id = ANY (ARRAY(SELECT s.msg_id FROM %1$s s
                                      WHERE s.msg_id >= $3 AND s.vt <= $1
                                      ORDER BY s.msg_id LIMIT $2 FOR UPDATE SKIP LOCKED))
                RETURNING %6$s)
                SELECT %3$s FROM r ORDER BY r.msg_id$f$
                USING now_ts, _qty - got, pgmq_ext.queue_head(lo, _qty);
        END IF;
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
$body$),
        -- set_vt(): the statements of pgmq_ext.set_vt_sql(); the new vt is computed (and
        -- checked) by the public function.
        ('set_vt', '_msg_id bigint, _vt timestamptz', 'SETOF pgmq.message_record', $body$
BEGIN
    RETURN QUERY UPDATE %1$s q SET vt = _vt WHERE q.msg_id = _msg_id
        RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers;
END
$body$),
        ('set_vt_many', '_msg_ids bigint[], _vt timestamptz', 'SETOF pgmq.message_record', $body$
BEGIN
    RETURN QUERY UPDATE %1$s q SET vt = _vt WHERE q.msg_id = ANY (_msg_ids)
        RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers;
END
$body$),
        -- Fenced, for a caller that names a message by (msg_id, read_ct), the read_ct its read
        -- saw (the store's claim and hand-off of one message, 20_handoff.sql): a message read
        -- again since is left alone. lock_owned locks it FOR KEY SHARE (readers skip it, vt
        -- updates do not wait); move_owned deletes it, into the archive when _archive, and
        -- gives its headers.
        ('lock_owned', '_msg_id bigint, _read_ct integer', 'boolean', $body$
BEGIN
    PERFORM FROM %1$s q WHERE q.msg_id = _msg_id AND q.read_ct = _read_ct FOR KEY SHARE OF q;
    RETURN FOUND;
END
$body$),
        ('move_owned', '_msg_id bigint, _read_ct integer, _archive boolean, OUT owned boolean, OUT moved_headers jsonb',
         'record', $body$
BEGIN
    IF _archive THEN
        WITH moved AS (
            DELETE FROM %1$s q WHERE q.msg_id = _msg_id AND q.read_ct = _read_ct RETURNING %6$s)
        INSERT INTO %2$s AS a (%3$s) SELECT %3$s FROM moved RETURNING a.headers INTO moved_headers;
    ELSE
        DELETE FROM %1$s q WHERE q.msg_id = _msg_id AND q.read_ct = _read_ct
        RETURNING q.headers INTO moved_headers;
    END IF;
    owned := FOUND;
END
$body$)
      ) AS g (operation, arguments, result, body)
         WHERE pgmq_ext.msg_id_interval(qname) IS NULL
            OR g.operation NOT IN (SELECT b.operation FROM pgmq_ext.queue_function_bodies_by_msg_id() b)
        UNION ALL
        SELECT b.* FROM pgmq_ext.queue_function_bodies_by_msg_id() b
         WHERE pgmq_ext.msg_id_interval(qname) IS NOT NULL
      ) AS f (operation, arguments, result, body)
     CROSS JOIN LATERAL (
        -- Generic plans (see above): every function of a queue partitioned by msg_id, the
        -- one-message read and pop, and the functions of several messages of any other queue
        -- but one partitioned by time.
        SELECT f.operation,
               CASE WHEN pgmq_ext.msg_id_interval(qname) IS NOT NULL
                         OR f.operation IN ('read', 'pop')
                         OR (f.operation LIKE '%\_many' AND NOT EXISTS (
                             SELECT FROM pgmq.meta m WHERE m.queue_name = qname AND m.is_partitioned))
                    THEN ' SET plan_cache_mode = force_generic_plan' ELSE '' END
        UNION ALL
        SELECT f.operation || '_many', ' SET plan_cache_mode = force_generic_plan'
         WHERE f.operation IN ('read', 'pop')
     ) AS v (operation, settings)
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
