-- Upkeep leases (table orchestrator.leases): the runtime's leader behind a transaction pooler.

-- Take or renew the leases `keys` for `holder` for `ttl`; returns the keys `holder` holds
-- afterwards. A lease is taken when it is free, already `holder`'s, or expired. One statement:
-- concurrent claimants of one key serialise on its row, and exactly one of them gets it.
CREATE OR REPLACE FUNCTION orchestrator.claim_leases(keys bigint[], holder text, ttl interval)
RETURNS SETOF bigint
LANGUAGE sql VOLATILE
AS $$
    INSERT INTO orchestrator.leases AS l (key, holder, acquired_at, expires_at)
    SELECT k, claim_leases.holder, clock_timestamp(), clock_timestamp() + ttl
      FROM unnest(keys) AS k
    ON CONFLICT (key) DO UPDATE
       SET holder = excluded.holder,
           acquired_at = CASE WHEN l.holder = excluded.holder THEN l.acquired_at
                              ELSE excluded.acquired_at END,
           expires_at = excluded.expires_at
     WHERE l.holder = excluded.holder OR l.expires_at < clock_timestamp()
    RETURNING l.key
$$;

-- Give up every lease of `holder` (a process stopping cleanly); returns how many.
CREATE OR REPLACE FUNCTION orchestrator.release_leases(holder text)
RETURNS integer
LANGUAGE sql VOLATILE
AS $$
    WITH gone AS (
        DELETE FROM orchestrator.leases l WHERE l.holder = release_leases.holder RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;
