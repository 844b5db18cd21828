-- cancel_run takes how long it may wait for the batches of the run at work (a third
-- argument), and claim the run ids of the messages (a fourth, optional): their former
-- versions go, so that calls are not ambiguous.
DROP FUNCTION IF EXISTS orchestrator.cancel_run(uuid, text);
DROP FUNCTION IF EXISTS orchestrator.claim(text, bigint[], integer[]);
