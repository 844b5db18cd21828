-- Version 3: one heartbeat row per running worker process (runtime/heartbeat.py writes it,
-- the dashboard's workers page reads it through ops/workers.py). A worker refreshes its row
-- every few seconds and deletes it when it stops; a row whose heartbeat is older than a minute
-- belongs to a dead process and is neither shown nor kept (the next heartbeat of any worker
-- deletes it).
CREATE TABLE orchestrator.workers (
    id uuid PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    steps text[] NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);
