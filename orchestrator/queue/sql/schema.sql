-- The queue layer's tables and types at the latest version, for fresh installs.
--
-- Keep in step with migrations/: a test installs this file into one database and every
-- migration into another and asserts the two catalogs are identical. Functions are not here:
-- they live in functions/*.sql and are applied after this file.

CREATE SCHEMA pgmq;
COMMENT ON SCHEMA pgmq IS 'PGMQ-compatible message queues (installed by orchestrator, no extension)';

CREATE SCHEMA pgmq_ext;
COMMENT ON SCHEMA pgmq_ext IS 'Queue layer internals beyond PGMQ''s API: versions, helpers, partitions';

-- Column names and order are part of the API: clients read rows positionally.
CREATE TYPE pgmq.message_record AS (
    msg_id bigint,
    read_ct integer,
    enqueued_at timestamptz,
    last_read_at timestamptz,
    vt timestamptz,
    message jsonb,
    headers jsonb
);

CREATE TYPE pgmq.queue_record AS (
    queue_name varchar,
    is_partitioned boolean,
    is_unlogged boolean,
    created_at timestamptz
);

CREATE TYPE pgmq.metrics_result AS (
    queue_name text,
    queue_length bigint,
    newest_msg_age_sec integer,
    oldest_msg_age_sec integer,
    total_messages bigint,
    scrape_time timestamptz,
    queue_visible_length bigint,
    default_partition_length bigint
);

-- One row per queue; queue names are stored lower-cased.
CREATE TABLE pgmq.meta (
    queue_name varchar NOT NULL UNIQUE,
    is_partitioned boolean NOT NULL,
    is_unlogged boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Versions applied to this database: one row per migration (or one for a fresh install).
-- `functions_sha256` is the checksum of the function files last applied, so an install whose
-- version and functions are current changes nothing.
CREATE TABLE pgmq_ext.schema_version (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    functions_sha256 text
);

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

-- Topic bindings (AMQP-style routing): a message sent with a routing key goes to every queue
-- bound by a pattern that matches it. `compiled_regex` is the pattern as an anchored regular
-- expression: `*` is exactly one dot-separated segment, `#` zero or more; the other
-- characters a pattern may hold ([a-zA-Z0-9_-] and `.`) are literal (the dot escaped).
-- A `#` next to a dot absorbs that dot, so `a.#` matches `a` and `#.b` matches `b`.
CREATE TABLE pgmq.topic_bindings (
    pattern text NOT NULL,
    queue_name text NOT NULL
        CONSTRAINT topic_bindings_meta_queue_name_fk
        REFERENCES pgmq.meta (queue_name) ON DELETE CASCADE,
    bound_at timestamptz NOT NULL DEFAULT now(),
    compiled_regex text GENERATED ALWAYS AS (
        '^' || replace(replace(replace(replace(replace(replace(
            pattern,
            '.', '\.'),
            '*', '[^.]+'),
            '\.#\.', '(\.[^.]+)*\.'),
            '#\.', '([^.]+\.)*'),
            '\.#', '(\.[^.]+)*'),
            '#', '.*')
        || '$'
    ) STORED,
    CONSTRAINT topic_bindings_unique_pattern_queue UNIQUE (pattern, queue_name)
);
CREATE INDEX topic_bindings_queue_name_idx ON pgmq.topic_bindings (queue_name);
