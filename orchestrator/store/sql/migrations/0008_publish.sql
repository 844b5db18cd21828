-- complete() takes the routing keys a step publishes (a seventeenth argument, NULL for a step
-- that publishes nothing): its former version goes, so that calls are not ambiguous.
DROP FUNCTION IF EXISTS orchestrator.complete(
    text, text, jsonb, boolean, text, bigint[], integer[], uuid[], jsonb[],
    bigint[], integer[], double precision[], jsonb[], bigint[], integer[], jsonb[]);
