-- Flow control (docs/architecture.md, "Flow control"): rate-limit buckets, in-flight slots,
-- paused steps, cancelled runs and the keys of deduplicated starts. The functions using these
-- tables are in functions/30_flow.sql; the hand-off consults cancelled_runs.

-- One token bucket per limit name: '<pipeline>.<step>', or a name shared by several steps.
-- `tokens` as of `updated_at`; takers refill it by the time elapsed first (rate per second,
-- at most `burst`) and take theirs in one UPDATE, so the row lock is held for one statement
-- only; `taken` is what the last UPDATE granted (RETURNING sees only the new row).
CREATE TABLE orchestrator.rate_buckets (
    name text PRIMARY KEY,
    rate double precision NOT NULL CHECK (rate > 0),
    burst double precision NOT NULL CHECK (burst >= 1),
    tokens double precision NOT NULL,
    taken integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.01);

-- Slots of max_in_flight: `size` rows per step ('<pipeline>.<step>'), a slot held by
-- `held_by` until `until`. A worker that dies keeps its slot only until `until` (the step's
-- visibility timeout after it took it), like the messages it held.
CREATE TABLE orchestrator.flow_slots (
    name text NOT NULL,
    slot integer NOT NULL,
    held_by uuid,
    until timestamptz,
    PRIMARY KEY (name, slot)
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.01);

-- Paused steps; step '' pauses the whole pipeline. Workers skip them while the row exists.
CREATE TABLE orchestrator.paused_steps (
    pipeline text NOT NULL,
    step text NOT NULL,
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text NOT NULL DEFAULT session_user,
    PRIMARY KEY (pipeline, step)
);

-- Cancelled runs: their messages left the queues when the cancel committed, and a hand-off of
-- the run sends nothing further (see orchestrator.cancelled_among()).
CREATE TABLE orchestrator.cancelled_runs (
    run_id uuid PRIMARY KEY,
    pipeline text NOT NULL,
    cancelled_at timestamptz NOT NULL DEFAULT now(),
    cancelled_by text NOT NULL DEFAULT session_user,
    removed integer NOT NULL DEFAULT 0
);

-- Runs started with a key: one row per (pipeline, key), pointing at the run that holds the
-- key. A second start with the key returns that run while it is not finished (or finished
-- less than the pipeline's dedupe_window ago); the unique key serialises racing starts.
CREATE TABLE orchestrator.runs (
    pipeline text NOT NULL,
    key text NOT NULL,
    run_id uuid NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, key)
);
CREATE INDEX runs_run_id ON orchestrator.runs (run_id);
