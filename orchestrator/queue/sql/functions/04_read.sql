-- Reading: read(), read_with_poll(), pop() and set_vt().
--
-- A read is one statement: pick up to `qty` visible messages oldest first (msg_id order),
-- lock them with FOR UPDATE SKIP LOCKED so concurrent readers never get the same message and
-- never wait for each other, move their vt, count the read, and return them. Row locks are
-- taken after the visibility check and re-checked on the newest row version, so a message a
-- concurrent reader just took (new vt in the future) is skipped, never delivered twice.

-- Raise unless vt (seconds) and qty are usable by a read.
CREATE OR REPLACE FUNCTION pgmq_ext.check_read(vt integer, qty integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF vt IS NULL OR vt < 0 THEN
        RAISE EXCEPTION 'vt must be a number of seconds >= 0, got %', coalesce(vt::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF qty IS NULL OR qty <= 0 THEN
        RAISE EXCEPTION 'qty must be a positive number of messages, got %', coalesce(qty::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- `statement` (an UPDATE or DELETE ... RETURNING message rows) with its rows ordered by msg_id.
-- RETURNING gives rows in scan order; one row needs no sort.
CREATE OR REPLACE FUNCTION pgmq_ext.sorted_by_msg_id(statement text, qty integer)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN qty = 1 THEN statement
            ELSE 'WITH r AS (' || statement || ') SELECT * FROM r ORDER BY msg_id' END;

-- The UPDATE of a read, returning the messages in the order the scan found them. Its inputs
-- are SQL: `now` (the time visibility is judged by, recorded as last_read_at), `vt` (the new
-- visibility time), `lim` (how many) and, when `filtered`, `cond` (a jsonb the message must
-- contain).
-- The rows are picked and locked in an ARRAY() subquery and updated by msg_id = ANY(...):
-- PostgreSQL plans this shape in half the time of a CTE joined to the UPDATE, and planning is
-- most of a dynamic statement's cost. A message a concurrent reader took between the pick and
-- the update cannot be lost or doubled: we hold its row lock.
CREATE OR REPLACE FUNCTION pgmq_ext.read_sql(
    queue_name text, filtered boolean, now text, vt text, lim text, cond text
)
RETURNS text
LANGUAGE sql STABLE
RETURN format(
    'UPDATE %1$s q SET vt = %3$s, read_ct = q.read_ct + 1, last_read_at = %2$s'
    ' WHERE q.msg_id = ANY (ARRAY('
    'SELECT msg_id FROM %1$s WHERE vt <= %2$s%5$s ORDER BY msg_id LIMIT %4$s FOR UPDATE SKIP LOCKED))'
    ' RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers',
    pgmq_ext.queue_table(queue_name), now, vt, lim,
    CASE WHEN filtered THEN ' AND message @> ' || cond ELSE '' END);

-- The statement read() runs, oldest message first: $1 now, $2 new vt, $3 qty, $4 conditional.
-- The containment filter is left out for an empty condition ('{}' would also drop messages that
-- are not JSON objects).
CREATE OR REPLACE FUNCTION pgmq_ext.read_sql(queue_name text, qty integer, conditional jsonb)
RETURNS text
LANGUAGE sql STABLE
RETURN pgmq_ext.sorted_by_msg_id(
    pgmq_ext.read_sql(
        queue_name, NOT (conditional IS NULL OR conditional = '{}'), '$1', '$2', '$3', '$4'),
    qty);

-- Through the queue's own function (13_queue_functions.sql: a plan cached per session) when it
-- has one, else the dynamic statement above.
CREATE OR REPLACE FUNCTION pgmq.read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}')
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
DECLARE
    fn text;
    now_ts timestamptz;
BEGIN
    IF vt IS NULL OR vt < 0 OR qty IS NULL OR qty <= 0 THEN
        PERFORM pgmq_ext.check_read(vt, qty);
    END IF;
    -- One message: "read:<q>"; several: "read_many:<q>" (13_queue_functions.sql). The
    -- operation is a constant in each branch, so the look-up is inlined.
    IF qty = 1 THEN
        fn := pgmq_ext.queue_function(queue_name, 'read');
    ELSE
        fn := pgmq_ext.queue_function(queue_name, 'read_many');
    END IF;
    IF fn IS NOT NULL THEN
        RETURN QUERY EXECUTE 'SELECT * FROM ' || fn || '($1, $2, $3)' USING vt, qty, conditional;
        RETURN;
    END IF;
    now_ts := clock_timestamp();
    RETURN QUERY EXECUTE pgmq_ext.read_sql(queue_name, qty, conditional)
        USING now_ts, now_ts + make_interval(secs => vt), qty, conditional;
END
$$;

-- Raise unless the polling arguments of a *_with_poll read are usable.
CREATE OR REPLACE FUNCTION pgmq_ext.check_poll(max_poll_seconds integer, poll_interval_ms integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF max_poll_seconds IS NULL OR max_poll_seconds < 0 THEN
        RAISE EXCEPTION 'max_poll_seconds must be >= 0, got %', coalesce(max_poll_seconds::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF poll_interval_ms IS NULL OR poll_interval_ms <= 0 THEN
        RAISE EXCEPTION 'poll_interval_ms must be > 0, got %', coalesce(poll_interval_ms::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- read(), repeated every `poll_interval_ms` until a message is visible or `max_poll_seconds`
-- have passed. Every attempt runs with a fresh snapshot (READ COMMITTED), so messages
-- committed while waiting are found; under REPEATABLE READ only the first attempt can see new
-- messages.
CREATE OR REPLACE FUNCTION pgmq.read_with_poll(
    queue_name text,
    vt integer,
    qty integer,
    max_poll_seconds integer DEFAULT 5,
    poll_interval_ms integer DEFAULT 100,
    conditional jsonb DEFAULT '{}'
)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
DECLARE
    fn text;
    statement text;
    now_ts timestamptz := clock_timestamp();
    deadline timestamptz;
BEGIN
    PERFORM pgmq_ext.check_read(vt, qty);
    PERFORM pgmq_ext.check_poll(max_poll_seconds, poll_interval_ms);
    IF qty = 1 THEN  -- as in pgmq.read
        fn := pgmq_ext.queue_function(queue_name, 'read');
    ELSE
        fn := pgmq_ext.queue_function(queue_name, 'read_many');
    END IF;
    IF fn IS NULL THEN
        statement := pgmq_ext.read_sql(queue_name, qty, conditional);
    END IF;
    deadline := now_ts + make_interval(secs => max_poll_seconds);
    LOOP
        IF fn IS NOT NULL THEN
            RETURN QUERY EXECUTE 'SELECT * FROM ' || fn || '($1, $2, $3)' USING vt, qty, conditional;
        ELSE
            RETURN QUERY EXECUTE statement
                USING now_ts, now_ts + make_interval(secs => vt), qty, conditional;
        END IF;
        IF FOUND OR now_ts >= deadline THEN
            RETURN;
        END IF;
        PERFORM pg_sleep(least(poll_interval_ms / 1000.0,
                               extract(epoch FROM deadline - clock_timestamp())));
        now_ts := clock_timestamp();
    END LOOP;
END
$$;

-- Read and delete at once: the DELETE of up to `lim` visible messages, returning them in the
-- order the scan found them; `now` and `lim` are SQL.
CREATE OR REPLACE FUNCTION pgmq_ext.pop_sql(queue_name text, now text, lim text)
RETURNS text
LANGUAGE sql STABLE
RETURN format(
    'DELETE FROM %1$s q WHERE q.msg_id = ANY (ARRAY('
    'SELECT msg_id FROM %1$s WHERE vt <= %2$s ORDER BY msg_id LIMIT %3$s FOR UPDATE SKIP LOCKED))'
    ' RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers',
    pgmq_ext.queue_table(queue_name), now, lim);

-- Read and delete at once (at-most-once delivery): up to `qty` visible messages, oldest first.
CREATE OR REPLACE FUNCTION pgmq.pop(queue_name text, qty integer DEFAULT 1)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
DECLARE
    fn text;
BEGIN
    IF qty IS NULL OR qty <= 0 THEN
        PERFORM pgmq_ext.check_read(0, qty);
    END IF;
    IF qty = 1 THEN  -- as in pgmq.read
        fn := pgmq_ext.queue_function(queue_name, 'pop');
    ELSE
        fn := pgmq_ext.queue_function(queue_name, 'pop_many');
    END IF;
    IF fn IS NOT NULL THEN
        RETURN QUERY EXECUTE 'SELECT * FROM ' || fn || '($1)' USING qty;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE pgmq_ext.sorted_by_msg_id(pgmq_ext.pop_sql(queue_name, '$1', '$2'), qty)
        USING clock_timestamp(), qty;
END
$$;

-- set_vt: make messages visible at a new time (seconds from now, or a timestamp), e.g. to
-- extend a lease or schedule a retry. Returns the updated messages.

-- UPDATE of vt: $1 msg_id or msg_ids (`many`), `vt` the SQL of the new visibility time.
CREATE OR REPLACE FUNCTION pgmq_ext.set_vt_sql(queue_name text, many boolean, vt text)
RETURNS text
LANGUAGE sql STABLE
RETURN format(
    'UPDATE %s SET vt = %s WHERE msg_id %s'
    ' RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers',
    pgmq_ext.queue_table(queue_name), vt,
    CASE WHEN many THEN '= ANY ($1)' ELSE '= $1' END);

-- The UPDATE the set_vt() overloads run: $1 msg_id or msg_ids, $2 new vt.
CREATE OR REPLACE FUNCTION pgmq_ext.set_vt_sql(queue_name text, many boolean)
RETURNS text
LANGUAGE sql STABLE
RETURN pgmq_ext.set_vt_sql(queue_name, many, '$2');

-- Through the queue's own function when it has one (pgmq_ext.set_vt_statement in
-- 13_queue_functions.sql), else the UPDATE above.
CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY EXECUTE pgmq_ext.set_vt_statement(queue_name, false)
        USING msg_id, pgmq_ext.visible_after(vt, 'vt');
END
$$;

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt timestamptz)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY EXECUTE pgmq_ext.set_vt_statement(queue_name, false)
        USING msg_id, pgmq_ext.visible_at(vt, 'vt');
END
$$;

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_ids bigint[], vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY EXECUTE pgmq_ext.set_vt_statement(queue_name, true)
        USING msg_ids, pgmq_ext.visible_after(vt, 'vt');
END
$$;

CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_ids bigint[], vt timestamptz)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY EXECUTE pgmq_ext.set_vt_statement(queue_name, true)
        USING msg_ids, pgmq_ext.visible_at(vt, 'vt');
END
$$;
