-- Adoption, step 2 (after the installer created the queue layer's schemas and functions):
-- move every queue's table pair back into schema pgmq (identity sequences and indexes move
-- with their tables), give queue tables the layer's storage settings, register the queues
-- (lower-cased names, creation times kept) and make their functions, restore topic bindings
-- and insert notifications, and drop what is left of PGMQ (its registry table).
DO $$
DECLARE
    m record;
    t record;
BEGIN
    FOR m IN SELECT lower(o.queue_name::text COLLATE "C") AS name, o.is_unlogged, o.created_at
               FROM pgmq_adopted.meta o LOOP
        EXECUTE format('ALTER TABLE pgmq_adopted.%I SET SCHEMA pgmq', 'q_' || m.name);
        EXECUTE format('ALTER TABLE pgmq_adopted.%I SET SCHEMA pgmq', 'a_' || m.name);
        EXECUTE format('ALTER TABLE pgmq.%I SET (%s)', 'q_' || m.name, pgmq_ext.queue_storage());
        INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged, created_at)
        VALUES (m.name, false, m.is_unlogged, m.created_at);
        PERFORM pgmq_ext.create_queue_functions(m.name);
    END LOOP;
    INSERT INTO pgmq.topic_bindings (pattern, queue_name, bound_at)
    SELECT b.pattern, b.queue_name, b.bound_at FROM adopt_bindings b
        ON CONFLICT ON CONSTRAINT topic_bindings_unique_pattern_queue DO NOTHING;
    FOR t IN SELECT * FROM adopt_throttles LOOP
        PERFORM pgmq.enable_notify_insert(t.queue_name, t.throttle_interval_ms);
    END LOOP;
END
$$;

-- Not CASCADE: anything else left there (adoption refuses such schemas) stops the adoption.
DROP TABLE pgmq_adopted.meta;
DROP SCHEMA pgmq_adopted;
