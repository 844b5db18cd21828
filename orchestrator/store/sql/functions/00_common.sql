-- Helpers shared by the store's functions.

-- The queue name of a pipeline step: <pipeline>__<step> (see docs/architecture.md).
CREATE OR REPLACE FUNCTION orchestrator.step_queue(pipeline text, step text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pipeline || '__' || step;
