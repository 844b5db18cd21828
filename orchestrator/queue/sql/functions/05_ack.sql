-- Acknowledging: delete() and archive(), for one message or many: through the queue's own
-- functions (13_queue_functions.sql) when it has them, else the dynamic statements below.

-- DELETE of messages: $1 msg_id, or (`many`) msg_ids returning those deleted.
CREATE OR REPLACE FUNCTION pgmq_ext.delete_sql(queue_name text, many boolean)
RETURNS text
LANGUAGE sql STABLE
RETURN format(
    CASE WHEN many THEN 'DELETE FROM %s WHERE msg_id = ANY ($1) RETURNING msg_id'
         ELSE 'DELETE FROM %s WHERE msg_id = $1' END,
    pgmq_ext.queue_table(queue_name));

CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    fn text := pgmq_ext.queue_function(queue_name, 'delete');
    done boolean;
    deleted bigint;
BEGIN
    IF fn IS NOT NULL THEN
        EXECUTE 'SELECT ' || fn || '($1)' INTO done USING msg_id;
        RETURN done;
    END IF;
    EXECUTE pgmq_ext.delete_sql(queue_name, false) USING msg_id;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted > 0;
END
$$;

-- Returns the msg_ids that were deleted (ids not in the queue are left out).
CREATE OR REPLACE FUNCTION pgmq.delete(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    fn text := pgmq_ext.queue_function(queue_name, 'delete_many');
BEGIN
    IF fn IS NOT NULL THEN
        RETURN QUERY EXECUTE 'SELECT * FROM ' || fn || '($1)' USING msg_ids;
    ELSE
        RETURN QUERY EXECUTE pgmq_ext.delete_sql(queue_name, true) USING msg_ids;
    END IF;
END
$$;

-- Move messages to the archive in one statement: $1 msg_id or msg_ids.
-- archived_at takes its default (now()).
CREATE OR REPLACE FUNCTION pgmq_ext.archive_sql(queue_name text, many boolean)
RETURNS text
LANGUAGE sql STABLE
RETURN format(
    'WITH moved AS ('
    ' DELETE FROM %s WHERE msg_id %s'
    ' RETURNING msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers'
    ') INSERT INTO %s (msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers)'
    ' SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM moved'
    ' RETURNING msg_id',
    pgmq_ext.queue_table(queue_name),
    CASE WHEN many THEN '= ANY ($1)' ELSE '= $1' END,
    pgmq_ext.archive_table(queue_name));

CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    fn text := pgmq_ext.queue_function(queue_name, 'archive');
    done boolean;
    archived bigint;
BEGIN
    IF fn IS NOT NULL THEN
        EXECUTE 'SELECT ' || fn || '($1)' INTO done USING msg_id;
        RETURN done;
    END IF;
    EXECUTE pgmq_ext.archive_sql(queue_name, false) USING msg_id;
    GET DIAGNOSTICS archived = ROW_COUNT;
    RETURN archived > 0;
END
$$;

-- Returns the msg_ids that were archived (ids not in the queue are left out).
CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    fn text := pgmq_ext.queue_function(queue_name, 'archive_many');
BEGIN
    IF fn IS NOT NULL THEN
        RETURN QUERY EXECUTE 'SELECT * FROM ' || fn || '($1)' USING msg_ids;
    ELSE
        RETURN QUERY EXECUTE pgmq_ext.archive_sql(queue_name, true) USING msg_ids;
    END IF;
END
$$;
