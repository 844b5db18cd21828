-- cancel_run takes how long it may wait for the batches of the run at work (a third
-- argument): the two-argument version goes, so that calls are not ambiguous.
DROP FUNCTION IF EXISTS orchestrator.cancel_run(uuid, text);
