-- Topics: AMQP-style routing of one message to every queue bound by a matching pattern.
--
-- A routing key is 1-255 characters of [a-zA-Z0-9._-], no leading or trailing dot, no `..`.
-- A pattern may also use `*` (exactly one segment) and `#` (zero or more segments), but not
-- `**`, `##`, `*#` or `#*`. Bindings are rows of pgmq.topic_bindings (see schema.sql for how a
-- pattern compiles to its regular expression); a dropped queue loses its bindings (cascade).
-- Sends run in the caller's transaction: every matching queue gets the message, or none does.
-- Error texts are PGMQ's.

CREATE OR REPLACE FUNCTION pgmq.validate_routing_key(routing_key text)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF routing_key IS NULL OR routing_key = '' THEN
        RAISE EXCEPTION 'routing_key cannot be NULL or empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(routing_key) > 255 THEN
        RAISE EXCEPTION 'routing_key length cannot exceed 255 characters, got % characters', length(routing_key)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF routing_key !~ '^[abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-]+$' THEN
        RAISE EXCEPTION 'routing_key contains invalid characters. Only alphanumeric, dots, hyphens, and underscores are allowed. Got: %', routing_key
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pgmq_ext.check_dots('routing_key', routing_key);
    RETURN true;
END
$$;

-- The dot rules keys and patterns share; `what` names the argument in the message.
CREATE OR REPLACE FUNCTION pgmq_ext.check_dots(what text, value text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF left(value, 1) = '.' THEN
        RAISE EXCEPTION '% cannot start with a dot. Got: %', what, value USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF right(value, 1) = '.' THEN
        RAISE EXCEPTION '% cannot end with a dot. Got: %', what, value USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF strpos(value, '..') > 0 THEN
        RAISE EXCEPTION '% cannot contain consecutive dots. Got: %', what, value USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION pgmq.validate_topic_pattern(pattern text)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF pattern IS NULL OR pattern = '' THEN
        RAISE EXCEPTION 'pattern cannot be NULL or empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(pattern) > 255 THEN
        RAISE EXCEPTION 'pattern length cannot exceed 255 characters, got % characters', length(pattern)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pattern !~ '^[abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._*#-]+$' THEN
        RAISE EXCEPTION 'pattern contains invalid characters. Only alphanumeric, dots, hyphens, underscores, *, and # are allowed. Got: %', pattern
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pgmq_ext.check_dots('pattern', pattern);
    IF strpos(pattern, '**') > 0 THEN
        RAISE EXCEPTION 'pattern cannot contain consecutive stars (**). Use # for multi-segment matching. Got: %', pattern
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF strpos(pattern, '##') > 0 THEN
        RAISE EXCEPTION 'pattern cannot contain consecutive hashes (##). A single # already matches zero or more segments. Got: %', pattern
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF strpos(pattern, '*#') > 0 OR strpos(pattern, '#*') > 0 THEN
        RAISE EXCEPTION 'pattern cannot contain adjacent wildcards (*# or #*). Separate wildcards with dots. Got: %', pattern
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN true;
END
$$;

-- The registered name of an existing queue, for a binding (PGMQ's texts when it is missing).
CREATE OR REPLACE FUNCTION pgmq_ext.bound_queue(queue_name text)
RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    qname text := lower(queue_name COLLATE "C");
BEGIN
    IF queue_name IS NULL OR queue_name = '' THEN
        RAISE EXCEPTION 'queue_name cannot be NULL or empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = qname) THEN
        RAISE EXCEPTION 'Queue "%" does not exist. Create the queue first using pgmq.create()', queue_name
            USING ERRCODE = 'undefined_table';
    END IF;
    RETURN qname;
END
$$;

-- Idempotent: binding the same pattern to the same queue twice keeps one binding.
CREATE OR REPLACE FUNCTION pgmq.bind_topic(pattern text, queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pgmq.validate_topic_pattern(pattern);
    INSERT INTO pgmq.topic_bindings (pattern, queue_name)
    VALUES (pattern, pgmq_ext.bound_queue(queue_name))
    ON CONFLICT ON CONSTRAINT topic_bindings_unique_pattern_queue DO NOTHING;
END
$$;

-- Whether a binding was removed.
CREATE OR REPLACE FUNCTION pgmq.unbind_topic(pattern text, queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    IF pattern IS NULL OR pattern = '' THEN
        RAISE EXCEPTION 'pattern cannot be NULL or empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF queue_name IS NULL OR queue_name = '' THEN
        RAISE EXCEPTION 'queue_name cannot be NULL or empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM pgmq.topic_bindings b
     WHERE b.pattern = unbind_topic.pattern
       AND b.queue_name = lower(unbind_topic.queue_name COLLATE "C");
    RETURN FOUND;
END
$$;

CREATE OR REPLACE FUNCTION pgmq.list_topic_bindings()
RETURNS TABLE (pattern text, queue_name text, bound_at timestamptz, compiled_regex text)
LANGUAGE sql STABLE
AS $$
    SELECT b.pattern, b.queue_name, b.bound_at, b.compiled_regex
      FROM pgmq.topic_bindings b
     ORDER BY b.bound_at DESC, b.pattern, b.queue_name
$$;

CREATE OR REPLACE FUNCTION pgmq.list_topic_bindings(queue_name text)
RETURNS TABLE (pattern text, queue_name text, bound_at timestamptz, compiled_regex text)
LANGUAGE sql STABLE
AS $$
    SELECT b.pattern, b.queue_name, b.bound_at, b.compiled_regex
      FROM pgmq.topic_bindings b
     WHERE b.queue_name = lower(list_topic_bindings.queue_name COLLATE "C")
     ORDER BY b.bound_at DESC, b.pattern
$$;

-- The bindings a routing key matches, sending nothing.
CREATE OR REPLACE FUNCTION pgmq.test_routing(routing_key text)
RETURNS TABLE (pattern text, queue_name text, compiled_regex text)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM pgmq.validate_routing_key(routing_key);
    RETURN QUERY
        SELECT b.pattern, b.queue_name, b.compiled_regex
          FROM pgmq.topic_bindings b
         WHERE test_routing.routing_key ~ b.compiled_regex
         ORDER BY b.pattern, b.queue_name;
END
$$;

-- The distinct queues a (validated) routing key reaches, in name order.
CREATE OR REPLACE FUNCTION pgmq_ext.routed_queues(routing_key text)
RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    SELECT DISTINCT b.queue_name
      FROM pgmq.topic_bindings b
     WHERE pgmq.validate_routing_key(routing_key) AND routing_key ~ b.compiled_regex
     ORDER BY 1
$$;

-- Send `msg` once to every queue a binding of `routing_key` reaches; returns how many (0 for
-- none).
CREATE OR REPLACE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, headers jsonb, delay integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    target text;
    sent integer := 0;
BEGIN
    PERFORM pgmq.validate_routing_key(routing_key);
    IF msg IS NULL THEN
        RAISE EXCEPTION 'msg cannot be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF delay IS NULL OR delay < 0 THEN
        RAISE EXCEPTION 'delay cannot be negative, got: %', coalesce(delay::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR target IN SELECT pgmq_ext.routed_queues(routing_key) LOOP
        PERFORM pgmq.send(target, msg, headers, delay);
        sent := sent + 1;
    END LOOP;
    RETURN sent;
END
$$;

CREATE OR REPLACE FUNCTION pgmq.send_topic(routing_key text, msg jsonb)
RETURNS integer
LANGUAGE sql
AS $$
    SELECT pgmq.send_topic(routing_key, msg, NULL::jsonb, 0)
$$;

CREATE OR REPLACE FUNCTION pgmq.send_topic(routing_key text, msg jsonb, delay integer)
RETURNS integer
LANGUAGE sql
AS $$
    SELECT pgmq.send_topic(routing_key, msg, NULL::jsonb, delay)
$$;

-- Send a batch to every queue a binding of `routing_key` reaches: the queue and msg_id of
-- each message, queue by queue in name order, messages in batch order.
CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(
    routing_key text, msgs jsonb[], headers jsonb[], delay timestamptz
)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    target text;
BEGIN
    PERFORM pgmq.validate_routing_key(routing_key);
    PERFORM pgmq_ext.check_batch(msgs, headers);
    FOR target IN SELECT pgmq_ext.routed_queues(routing_key) LOOP
        RETURN QUERY SELECT target, s.id FROM pgmq.send_batch(target, msgs, headers, delay) AS s (id);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[])
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql
AS $$
    SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, NULL::jsonb[], clock_timestamp())
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], headers jsonb[])
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql
AS $$
    SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, headers, clock_timestamp())
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], delay integer)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql
AS $$
    SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, NULL::jsonb[], pgmq_ext.visible_after(delay))
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(routing_key text, msgs jsonb[], delay timestamptz)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql
AS $$
    SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, NULL::jsonb[], delay)
$$;

CREATE OR REPLACE FUNCTION pgmq.send_batch_topic(
    routing_key text, msgs jsonb[], headers jsonb[], delay integer
)
RETURNS TABLE (queue_name text, msg_id bigint)
LANGUAGE sql
AS $$
    SELECT * FROM pgmq.send_batch_topic(routing_key, msgs, headers, pgmq_ext.visible_after(delay))
$$;
