-- Sending: send() and send_batch(), six shapes each. A message becomes visible at `vt`:
-- clock_timestamp() plus `delay` seconds, or the timestamp given as `delay`.
--
-- Each overload fills the arguments of send_one() or send_many(), which run the queue's own
-- INSERT (13_queue_functions.sql) or, for a queue without one, the dynamic INSERT built below.
-- A single send uses EXECUTE ... INTO (cheaper than RETURN QUERY EXECUTE, which sets up a
-- result portal).

-- The time `seconds` from now, for a send's delay or set_vt's vt (`what` names the argument).
CREATE OR REPLACE FUNCTION pgmq_ext.visible_after(seconds integer, what text DEFAULT 'delay')
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF seconds IS NULL OR seconds < 0 THEN
        RAISE EXCEPTION '% must be a number of seconds >= 0, got %', what, coalesce(seconds::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN clock_timestamp() + make_interval(secs => seconds);
END
$$;

-- A visibility time given as a timestamp (a past time means at once); NULL is refused.
CREATE OR REPLACE FUNCTION pgmq_ext.visible_at(ts timestamptz, what text DEFAULT 'delay')
RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF ts IS NULL THEN
        RAISE EXCEPTION '% must be a timestamp, got NULL', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN ts;
END
$$;

-- INSERT of one message: `vt` is the SQL of its visibility time, $2 the message, $3 its
-- headers. The send() overloads pass vt as $1; pgmq_ext.statements() passes an expression.
CREATE OR REPLACE FUNCTION pgmq_ext.send_sql(queue_name text, vt text)
RETURNS text
LANGUAGE sql STABLE
RETURN format(
    'INSERT INTO %s (vt, message, headers) VALUES (%s, $2, $3) RETURNING msg_id',
    pgmq_ext.queue_table(queue_name), vt);

-- The INSERT the send() overloads run: $1 vt, $2 message, $3 headers.
CREATE OR REPLACE FUNCTION pgmq_ext.send_sql(queue_name text)
RETURNS text
LANGUAGE sql STABLE
RETURN pgmq_ext.send_sql(queue_name, '$1');

-- INSERT of a batch, msg_ids returned in the order of the messages: `vt`, `msgs` and `headers`
-- are the SQL of the visibility time and of the two jsonb arrays (headers may be NULL).
CREATE OR REPLACE FUNCTION pgmq_ext.send_batch_sql(
    queue_name text, vt text, msgs text, headers text
)
RETURNS text
LANGUAGE sql STABLE
RETURN format(
    'INSERT INTO %s (vt, message, headers) '
    'SELECT %s, m.message, m.headers FROM unnest(%s, %s) AS m (message, headers) '
    'RETURNING msg_id',
    pgmq_ext.queue_table(queue_name), vt, msgs, headers);

-- Raise unless `msgs` holds at least one message and `headers` (when given) one per message.
CREATE OR REPLACE FUNCTION pgmq_ext.check_batch(msgs jsonb[], headers jsonb[])
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF msgs IS NULL OR cardinality(msgs) = 0 THEN
        RAISE EXCEPTION 'msgs cannot be NULL or empty: send_batch needs at least one message (msgs is %)',
            CASE WHEN msgs IS NULL THEN 'NULL' ELSE 'empty' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF headers IS NOT NULL AND cardinality(headers) <> cardinality(msgs) THEN
        RAISE EXCEPTION 'headers array length (%) must match msgs array length (%): pass one header per message',
            cardinality(headers), cardinality(msgs)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- The INSERT the send_batch() overloads run, after checking the batch: $1 vt, $2 msgs,
-- $3 headers.
CREATE OR REPLACE FUNCTION pgmq_ext.send_batch_sql(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS text
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM pgmq_ext.check_batch(msgs, headers);
    RETURN pgmq_ext.send_batch_sql(queue_name, '$1', '$2::jsonb[]', '$3::jsonb[]');
END
$$;

-- Send one message visible at `vt`: through the queue's own function when it has one
-- (13_queue_functions.sql), else the dynamic INSERT. Every send() overload ends here.
CREATE OR REPLACE FUNCTION pgmq_ext.send_one(queue_name text, vt timestamptz, msg jsonb, headers jsonb)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    fn text := pgmq_ext.queue_function(queue_name, 'send');
    msg_id bigint;
BEGIN
    IF fn IS NOT NULL THEN
        EXECUTE 'SELECT ' || fn || '($1, $2, $3)' INTO msg_id USING vt, msg, headers;
    ELSE
        EXECUTE pgmq_ext.send_sql(queue_name) INTO msg_id USING vt, msg, headers;
    END IF;
    RETURN msg_id;
END
$$;

-- Send a checked batch visible at `vt`, msg_ids in the order of the messages: through the
-- queue's own function when it has one, else the dynamic INSERT. Every send_batch() overload
-- ends here.
CREATE OR REPLACE FUNCTION pgmq_ext.send_many(queue_name text, vt timestamptz, msgs jsonb[], headers jsonb[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    fn text := pgmq_ext.queue_function(queue_name, 'send_batch');
BEGIN
    IF fn IS NULL THEN
        RETURN QUERY EXECUTE pgmq_ext.send_batch_sql(queue_name, msgs, headers)
            USING vt, msgs, headers;
    ELSE
        PERFORM pgmq_ext.check_batch(msgs, headers);
        RETURN QUERY EXECUTE 'SELECT * FROM ' || fn || '($1, $2, $3)' USING vt, msgs, headers;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN NEXT pgmq_ext.send_one(queue_name, clock_timestamp(), msg, NULL::jsonb);
END
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN NEXT pgmq_ext.send_one(queue_name, clock_timestamp(), msg, headers);
END
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN NEXT pgmq_ext.send_one(queue_name, pgmq_ext.visible_after(delay), msg, NULL::jsonb);
END
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN NEXT pgmq_ext.send_one(queue_name, pgmq_ext.visible_at(delay), msg, NULL::jsonb);
END
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN NEXT pgmq_ext.send_one(queue_name, pgmq_ext.visible_after(delay), msg, headers);
END
$$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN NEXT pgmq_ext.send_one(queue_name, pgmq_ext.visible_at(delay), msg, headers);
END
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY SELECT * FROM pgmq_ext.send_many(queue_name, clock_timestamp(), msgs, NULL::jsonb[]);
END
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY SELECT * FROM pgmq_ext.send_many(queue_name, clock_timestamp(), msgs, headers);
END
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY SELECT * FROM pgmq_ext.send_many(queue_name, pgmq_ext.visible_after(delay), msgs, NULL::jsonb[]);
END
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY SELECT * FROM pgmq_ext.send_many(queue_name, pgmq_ext.visible_at(delay), msgs, NULL::jsonb[]);
END
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY SELECT * FROM pgmq_ext.send_many(queue_name, pgmq_ext.visible_after(delay), msgs, headers);
END
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY SELECT * FROM pgmq_ext.send_many(queue_name, pgmq_ext.visible_at(delay), msgs, headers);
END
$$;
