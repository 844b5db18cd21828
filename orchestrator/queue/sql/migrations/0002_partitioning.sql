-- Version 2: native partitioned queues (no pg_partman).
--
-- One row per partitioned queue. `partition_by` is 'msg_id' when the partition interval parses
-- as an integer (then the id_* columns are set), else 'time' (then the time_* columns are set;
-- the queue is partitioned by enqueued_at, its archive by archived_at).
CREATE TABLE pgmq_ext.partition_config (
    queue_name varchar PRIMARY KEY REFERENCES pgmq.meta (queue_name) ON DELETE CASCADE,
    partition_by text NOT NULL CHECK (partition_by IN ('msg_id', 'time')),
    partition_interval text NOT NULL,
    retention_interval text NOT NULL,
    id_interval bigint CHECK (id_interval > 0),
    id_retention bigint CHECK (id_retention > 0),
    time_interval interval,
    time_retention interval,
    premake integer NOT NULL DEFAULT 4 CHECK (premake BETWEEN 1 AND 1000),
    maintained_at timestamptz,
    CHECK (
        CASE partition_by
            WHEN 'msg_id' THEN id_interval IS NOT NULL AND id_retention IS NOT NULL
            ELSE time_interval IS NOT NULL AND time_retention IS NOT NULL
        END
    )
);

-- One row of pgmq_ext.run_maintenance()'s report.
CREATE TYPE pgmq_ext.maintenance_action AS (
    queue_name text,
    table_name text,      -- the partitioned table, e.g. pgmq.q_jobs
    action text,          -- created | dropped | skipped | failed
    partition_name text,  -- e.g. pgmq_ext.q_jobs_p10000
    moved_rows bigint,    -- rows moved into the new partition out of the default partition
    detail text
);
