-- Upkeep leases: which process runs an upkeep job (database maintenance, the schedules of a
-- pipeline) when workers reach PostgreSQL through a transaction pooler, where a session
-- advisory lock cannot be held (the pooler hands the next transaction to another server
-- connection). A lease belongs to `holder` until `expires_at`; the holder renews it every few
-- seconds, and anyone may take a lease whose time has run out (orchestrator.claim_leases).
CREATE TABLE orchestrator.leases (
    key bigint PRIMARY KEY,
    holder text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
