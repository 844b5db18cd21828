-- Version 1: the PGMQ-compatible queue layer without partitioning.
--
-- Schema `pgmq` holds exactly what PGMQ's API defines (types, the `meta` registry, one table pair
-- per queue); schema `pgmq_ext` holds everything of ours: bookkeeping tables, internal helpers
-- and, later, the partitions of partitioned queues.
--
-- Migrations hold table and type DDL only. Functions live in ../functions/*.sql and are
-- re-applied (CREATE OR REPLACE) after every install or upgrade; a migration that changes a
-- function's signature or result type drops the old function first.

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
    queue_visible_length bigint
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
