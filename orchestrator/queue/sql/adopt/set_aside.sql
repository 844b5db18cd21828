-- Adoption, step 1 (under the installer's lock and transaction): keep PGMQ's topic bindings and
-- notify throttles in temporary tables, drop PGMQ's notify triggers and functions (its types go
-- with them), and rename schema pgmq to pgmq_adopted, so the installer can create the queue
-- layer's schema pgmq as on a fresh database. The queue tables move back in step 2.
CREATE TEMPORARY TABLE adopt_bindings (pattern text, queue_name text, bound_at timestamptz)
    ON COMMIT DROP;

CREATE TEMPORARY TABLE adopt_throttles (queue_name text, throttle_interval_ms integer)
    ON COMMIT DROP;

DO $$
DECLARE
    r record;
BEGIN
    IF to_regclass('pgmq.topic_bindings') IS NOT NULL THEN
        INSERT INTO adopt_bindings
        SELECT b.pattern, lower(b.queue_name COLLATE "C"), b.bound_at FROM pgmq.topic_bindings b;
    END IF;
    IF to_regclass('pgmq.notify_insert_throttle') IS NOT NULL THEN
        INSERT INTO adopt_throttles
        SELECT lower(t.queue_name::text COLLATE "C"), t.throttle_interval_ms
          FROM pgmq.notify_insert_throttle t;
    END IF;
    FOR r IN SELECT t.tgname, t.tgrelid::regclass AS tab
               FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
              WHERE c.relnamespace = 'pgmq'::regnamespace AND NOT t.tgisinternal LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, r.tab);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p
              WHERE p.pronamespace = 'pgmq'::regnamespace LOOP
        EXECUTE format('DROP FUNCTION %s', r.f);
    END LOOP;
    FOR r IN SELECT t.oid::regtype AS t FROM pg_type t
              WHERE t.typnamespace = 'pgmq'::regnamespace AND t.typtype = 'c'
                AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.reltype = t.oid AND c.relkind <> 'c') LOOP
        EXECUTE format('DROP TYPE %s', r.t);
    END LOOP;
    DROP TABLE IF EXISTS pgmq.topic_bindings, pgmq.notify_insert_throttle;
END
$$;

ALTER SCHEMA pgmq RENAME TO pgmq_adopted;
