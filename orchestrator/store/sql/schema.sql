-- Schema `orchestrator`: what the pipelines need beyond queues.
--
-- Tables only; functions live in functions/*.sql and are re-applied (CREATE OR REPLACE) by
-- every install whose function checksum changed. Version 1.

CREATE SCHEMA orchestrator;
COMMENT ON SCHEMA orchestrator IS 'Pipeline metadata, join state and schedules of orchestrator';

CREATE TABLE orchestrator.schema_version (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    functions_sha256 text
);

-- One row per applied pipeline: its canonical spec (Pipeline.to_json), the hash `run` compares
-- with the YAML it loaded, and the entry step `start()` enqueues into.
CREATE TABLE orchestrator.pipelines (
    name text PRIMARY KEY,
    spec jsonb NOT NULL,
    spec_hash text NOT NULL,
    entry_step text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Join state: one row per (pipeline, join step, run). Each predecessor's hand-off records its
-- output under its step name in `arrived`, in the hand-off's transaction; the arrival that
-- completes `expected` enqueues the join step and sets `completed_at` (the row lock serialises
-- concurrent last arrivals, so the join step is enqueued exactly once).
CREATE TABLE orchestrator.joins (
    pipeline text NOT NULL,
    step text NOT NULL,
    run_id uuid NOT NULL,
    arrived jsonb NOT NULL DEFAULT '{}',
    expected text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (pipeline, step, run_id)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);

CREATE INDEX joins_completed_at ON orchestrator.joins (completed_at) WHERE completed_at IS NOT NULL;

-- Schedules: the last tick fired per (pipeline, schedule), so that with many workers each tick
-- fires once, and a restart neither skips nor repeats a tick within the catch-up window.
CREATE TABLE orchestrator.schedules (
    pipeline text NOT NULL,
    name text NOT NULL,
    cron text NOT NULL,
    last_tick timestamptz,
    next_tick timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, name)
);
