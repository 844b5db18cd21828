-- Adoption of PGMQ installed as an extension: make its schema and tables (registry and queue
-- tables alike, with their sequences) ordinary objects, drop the queues' notify triggers
-- (they call an extension function), then drop the extension: its functions and types go,
-- every table and row stays. Then adoption goes on as for PGMQ installed from its SQL files.
DO $$
DECLARE
    ext oid := (SELECT e.oid FROM pg_extension e WHERE e.extname = 'pgmq');
    r record;
BEGIN
    FOR r IN SELECT t.tgname, t.tgrelid::regclass AS tab
               FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
              WHERE c.relnamespace = 'pgmq'::regnamespace AND NOT t.tgisinternal LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, r.tab);
    END LOOP;
    FOR r IN SELECT c.oid::regclass AS rel, c.relkind
               FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
              WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
                AND d.refobjid = ext AND d.deptype = 'e' AND c.relkind IN ('r', 'p', 'S')
              ORDER BY c.relkind DESC LOOP
        EXECUTE format('ALTER EXTENSION pgmq DROP %s %s',
                       CASE WHEN r.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.rel);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_depend d
                WHERE d.classid = 'pg_namespace'::regclass AND d.objid = 'pgmq'::regnamespace
                  AND d.refobjid = ext AND d.deptype = 'e') THEN
        ALTER EXTENSION pgmq DROP SCHEMA pgmq;
    END IF;
END
$$;

DROP EXTENSION pgmq;
