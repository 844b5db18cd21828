-- Insert notifications: NOTIFY "pgmq.q_<name>.INSERT" when messages arrive, at most once per
-- throttle interval per queue, so idle consumers can LISTEN instead of polling hard.
--
-- Throttle state: the time of the last notification (ms since the epoch) is kept in a
-- per-queue sequence, pgmq_ext.q_<name>_notify, not in a table row. Sequences are not
-- transactional: reading one takes no row lock, creates no dead tuples, and never raises a
-- serialization failure under REPEATABLE READ; a send inside a long transaction cannot make
-- other senders wait. Almost every send only reads that value and finds the interval has not
-- passed. When it has, the sender takes a session-level try-lock (released before returning,
-- never waited for) to re-check and set the value, so two senders cannot both notify within
-- one interval. A notification whose transaction rolls back is lost like the message it
-- announced; consumers keep a slow poll as a safety net anyway.
--
-- The trigger is FOR EACH STATEMENT: a send_batch of 1,000 messages costs one check.
-- Its arguments: channel, throttle interval (ms), name of the throttle sequence.

CREATE OR REPLACE FUNCTION pgmq_ext.notify_insert()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    channel text := TG_ARGV[0];
    throttle_ms bigint := TG_ARGV[1]::bigint;
    last_ms bigint;
    lock_key bigint;
BEGIN
    IF throttle_ms = 0 THEN
        PERFORM pg_notify(channel, NULL);
        RETURN NULL;
    END IF;
    last_ms := pg_sequence_last_value(TG_ARGV[2]::regclass);
    IF pgmq_ext.notified_within(last_ms, throttle_ms) THEN
        RETURN NULL;
    END IF;
    lock_key := hashtextextended('pgmq notify ' || channel, 0);
    IF NOT pg_try_advisory_lock(lock_key) THEN
        RETURN NULL;  -- another sender is notifying right now
    END IF;
    BEGIN
        IF NOT pgmq_ext.notified_within(pg_sequence_last_value(TG_ARGV[2]::regclass), throttle_ms) THEN
            PERFORM setval(TG_ARGV[2]::regclass, pgmq_ext.clock_ms());
            PERFORM pg_notify(channel, NULL);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        PERFORM pg_advisory_unlock(lock_key);
        RAISE;
    END;
    PERFORM pg_advisory_unlock(lock_key);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION pgmq_ext.clock_ms()
RETURNS bigint
LANGUAGE sql VOLATILE
RETURN (extract(epoch FROM clock_timestamp()) * 1000)::bigint;

-- True when the last notification (ms since the epoch, NULL for never) is less than
-- `throttle_ms` ago. A last time in the future (the clock went back) does not count.
CREATE OR REPLACE FUNCTION pgmq_ext.notified_within(last_ms bigint, throttle_ms bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    now_ms bigint := pgmq_ext.clock_ms();
BEGIN
    RETURN last_ms IS NOT NULL AND now_ms >= last_ms AND now_ms - last_ms < throttle_ms;
END
$$;

CREATE OR REPLACE FUNCTION pgmq.enable_notify_insert(queue_name text, throttle_interval_ms integer DEFAULT 250)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    tab text := pgmq_ext.queue_table(queue_name);
    qname text := lower(queue_name COLLATE "C");
    sequence_name text := 'pgmq_ext.' || quote_ident('q_' || qname || '_notify');
BEGIN
    IF throttle_interval_ms IS NULL OR throttle_interval_ms < 0 THEN
        RAISE EXCEPTION 'throttle_interval_ms must be non-negative, got: %', coalesce(throttle_interval_ms::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pgmq_ext.lock_queue(qname);
    EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %s', sequence_name);
    EXECUTE format(
        'CREATE OR REPLACE TRIGGER notify_insert AFTER INSERT ON %s '
        'FOR EACH STATEMENT EXECUTE FUNCTION pgmq_ext.notify_insert(%L, %L, %L)',
        tab, 'pgmq.q_' || qname || '.INSERT', throttle_interval_ms, sequence_name);
END
$$;

CREATE OR REPLACE FUNCTION pgmq.disable_notify_insert(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    tab text := pgmq_ext.queue_table(queue_name);
    qname text := lower(queue_name COLLATE "C");
BEGIN
    PERFORM pgmq_ext.lock_queue(qname);
    IF to_regclass('pgmq_ext.' || quote_ident('q_' || qname || '_notify')) IS NOT NULL THEN
        EXECUTE format('DROP TRIGGER IF EXISTS notify_insert ON %s', tab);
        EXECUTE format('DROP SEQUENCE pgmq_ext.%I', 'q_' || qname || '_notify');
    END IF;
END
$$;
