-- Creating, dropping, purging and listing queues.

-- Under the queue's lock: true when the caller should create queue `qname`, false when it
-- exists already (create is idempotent). A queue table that the catalog shows but `meta` does
-- not (a concurrent create committed after a REPEATABLE READ snapshot) also counts as existing;
-- any other relation in the way is an error rather than a silent no-op.
CREATE OR REPLACE FUNCTION pgmq_ext.claim_queue_name(qname text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    kind "char";
BEGIN
    PERFORM pgmq_ext.lock_queue(qname);
    IF EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = qname) THEN
        RETURN false;
    END IF;
    SELECT c.relkind INTO kind
      FROM pg_catalog.pg_class c
     WHERE c.oid = to_regclass('pgmq.' || quote_ident('q_' || qname));
    IF kind IN ('r', 'p') THEN
        RETURN false;
    END IF;
    IF kind IS NOT NULL OR to_regclass('pgmq.' || quote_ident('a_' || qname)) IS NOT NULL THEN
        RAISE EXCEPTION 'cannot create queue "%": the name pgmq.q_% or pgmq.a_% is taken by another object',
            qname, qname, qname
            USING ERRCODE = 'duplicate_table';
    END IF;
    RETURN true;
END
$$;

-- Create the table pair of a queue that is not partitioned, and register it.
-- msg_id is an identity column; its sequence counts every message ever sent (metrics).
-- The vt index lets a read find visible messages without walking over invisible ones when
-- most of a queue is delayed or in flight; the planner picks it or the msg_id order. It costs
-- every read a non-HOT update (docs/pgmq-compat.md: without it a read of 100 ran 1.2-1.6x
-- faster, but a read past 999,000 messages in flight took 230-730 ms instead of 0.7-9 ms).
CREATE OR REPLACE FUNCTION pgmq_ext.create_queue(queue_name text, unlogged boolean)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    qname text := pgmq_ext.queue_name(queue_name);
    q text := 'q_' || qname;
    a text := 'a_' || qname;
BEGIN
    IF NOT pgmq_ext.claim_queue_name(qname) THEN
        RETURN;
    END IF;
    EXECUTE format(
        'CREATE %s TABLE pgmq.%I (msg_id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY, %s) WITH (%s)',
        CASE WHEN unlogged THEN 'UNLOGGED' ELSE '' END, q,
        pgmq_ext.message_columns(), pgmq_ext.queue_storage());
    EXECUTE format('CREATE INDEX ON pgmq.%I (vt)', q);
    EXECUTE format(
        'CREATE TABLE pgmq.%I (msg_id bigint PRIMARY KEY, %s, archived_at timestamptz NOT NULL DEFAULT now())',
        a, pgmq_ext.message_columns());
    EXECUTE format('CREATE INDEX ON pgmq.%I (archived_at)', a);
    INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged)
    VALUES (qname, false, unlogged);
    PERFORM pgmq_ext.create_queue_functions(qname);
END
$$;

CREATE OR REPLACE FUNCTION pgmq.create(queue_name text)
RETURNS void
LANGUAGE sql
AS $$
    SELECT pgmq_ext.create_queue(queue_name, false)
$$;

-- The queue table is UNLOGGED (fast, emptied after a crash); the archive is not.
CREATE OR REPLACE FUNCTION pgmq.create_unlogged(queue_name text)
RETURNS void
LANGUAGE sql
AS $$
    SELECT pgmq_ext.create_queue(queue_name, true)
$$;

-- Drop a queue, its archive, its partitions, its functions and its settings. False (with a NOTICE) when there
-- is no such queue.
CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    qname text := lower(queue_name COLLATE "C");
BEGIN
    PERFORM pgmq_ext.lock_queue(qname);
    IF NOT EXISTS (SELECT 1 FROM pgmq.meta m WHERE m.queue_name = qname) THEN
        RAISE NOTICE 'queue "%" does not exist', queue_name;
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS pgmq.%I, pgmq.%I', 'q_' || qname, 'a_' || qname);
    IF to_regclass('pgmq_ext.' || quote_ident('q_' || qname || '_notify')) IS NOT NULL THEN
        EXECUTE format('DROP SEQUENCE pgmq_ext.%I', 'q_' || qname || '_notify');
    END IF;
    PERFORM pgmq_ext.drop_queue_functions(qname);
    -- Cascades to pgmq_ext.partition_config.
    DELETE FROM pgmq.meta m WHERE m.queue_name = qname;
    RETURN true;
END
$$;

-- Delete every message of a queue (not its archive); returns how many were deleted.
-- DELETE rather than TRUNCATE: it does not lock out concurrent readers and writers.
CREATE OR REPLACE FUNCTION pgmq.purge_queue(queue_name text)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    deleted bigint;
BEGIN
    EXECUTE format('DELETE FROM %s', pgmq_ext.queue_table(queue_name));
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;

CREATE OR REPLACE FUNCTION pgmq.list_queues()
RETURNS SETOF pgmq.queue_record
LANGUAGE sql STABLE
AS $$
    SELECT m.queue_name, m.is_partitioned, m.is_unlogged, m.created_at
      FROM pgmq.meta m
     ORDER BY m.created_at, m.queue_name
$$;

-- PGMQ detaches the archive from its extension here; without an extension there is nothing to
-- detach, so this does nothing. Kept so callers of PGMQ's API keep working.
CREATE OR REPLACE FUNCTION pgmq.detach_archive(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    NULL;
END
$$;
