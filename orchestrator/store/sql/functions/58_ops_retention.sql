-- Archive retention (package orchestrator.ops, `orchestrator maintain`).

-- Delete up to `lim` rows archived before `older_than` from the archive of a queue that is not
-- partitioned (partitioned archives lose whole partitions instead); returns how many. Oldest
-- first through the archived_at index; callers repeat it, one short transaction per batch.
CREATE OR REPLACE FUNCTION orchestrator.ops_trim_archive(queue_name text, older_than timestamptz, lim integer DEFAULT 5000)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    archive text := 'a_' || lower(queue_name COLLATE "C");
    deleted bigint;
BEGIN
    IF to_regclass('pgmq.' || quote_ident(archive)) IS NULL THEN
        RETURN 0;
    END IF;
    EXECUTE format(
        'DELETE FROM pgmq.%1$I WHERE msg_id = ANY (ARRAY('
        'SELECT msg_id FROM pgmq.%1$I WHERE archived_at < $1 ORDER BY archived_at LIMIT $2))',
        archive)
        USING older_than, lim;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;
