-- complete() takes the routing keys a step publishes (a seventeenth argument, NULL for a step
-- that publishes nothing). The former sixteen-argument version goes; the function files make
-- it again as a wrapper over the new one (20_handoff.sql), so that workers of the previous
-- release keep handing off during a rolling deploy.
DROP FUNCTION IF EXISTS orchestrator.complete(
    text, text, jsonb, boolean, text, bigint[], integer[], uuid[], jsonb[],
    bigint[], integer[], double precision[], jsonb[], bigint[], integer[], jsonb[]);
