-- Queue names, table names, per-queue locks and storage settings.
--
-- Conventions for every function of the layer:
-- * Identifiers reach dynamic SQL only through quote_ident()/format('%I'); values always go
--   through EXECUTE ... USING, never into the statement text.
-- * The statement builders (pgmq_ext.*_sql) take the SQL of their inputs as text: $n
--   placeholders or expressions written in these files, never values.
-- * Every object is schema-qualified (and functions set no search_path: a SET clause on a
--   function costs a GUC save/restore on every call and prevents inlining). The functions are
--   SECURITY INVOKER, so a caller's search_path can only ever run code with its own rights.
-- * Errors the caller can fix carry SQLSTATE 22023 (invalid_parameter_value); an unknown
--   queue raises 42P01 (undefined_table) with the message 'queue "<name>" does not exist'.

-- Raise unless `queue_name` is a valid queue name: 1-47 ASCII letters, digits, underscores or
-- hyphens (`order-events`, as PGMQ allows). Names are case-insensitive (stored lower-cased).
-- What PGMQ refuses (`$`, `;`, `--`, `'`) is refused with PGMQ's text, and so is anything else
-- outside that set (spaces, quotes, non-ASCII look-alikes): every table name stays an
-- identifier that quote_ident()/format('%I') quote, and a channel name LISTEN can spell.
-- Error texts begin with PGMQ's where PGMQ has one (clients match on them).
CREATE OR REPLACE FUNCTION pgmq.validate_queue_name(queue_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF queue_name IS NULL THEN
        RAISE EXCEPTION 'queue name must not be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF queue_name = '' THEN
        RAISE EXCEPTION 'queue name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(queue_name) > 47 THEN
        RAISE EXCEPTION 'queue name is too long, maximum length is 47 characters: % has %',
            quote_literal(left(queue_name, 60)), length(queue_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pgmq_ext.check_name_characters(queue_name);
    -- The character class is spelled out (no ranges, no classes) so no collation or locale
    -- can widen it.
    IF queue_name !~ '^[abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-]+$' THEN
        RAISE EXCEPTION 'invalid queue name %: use only letters a-z, digits, underscores and hyphens',
            quote_literal(queue_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- PGMQ's own refusal (its format_table_name): `$`, `;`, `--` or a single quote, with its text.
CREATE OR REPLACE FUNCTION pgmq_ext.check_name_characters(queue_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF strpos(queue_name, '$') > 0 OR strpos(queue_name, ';') > 0
       OR strpos(queue_name, '--') > 0 OR strpos(queue_name, '''') > 0 THEN
        RAISE EXCEPTION 'queue name contains invalid characters: $, ;, --, or \'' (got %)',
            quote_literal(left(queue_name, 60))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- The stored (lower-cased) form of a queue name, after validation.
-- lower() under the "C" collation folds ASCII only, whatever the database locale.
CREATE OR REPLACE FUNCTION pgmq_ext.queue_name(queue_name text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    PERFORM pgmq.validate_queue_name(queue_name);
    RETURN lower(queue_name COLLATE "C");
END
$$;

-- Raise the error of an unknown queue (or of a NULL name). Only queue_table() calls it, on its
-- error path.
CREATE OR REPLACE FUNCTION pgmq_ext.no_such_queue(queue_name text)
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    IF queue_name IS NULL THEN
        RAISE EXCEPTION 'queue name must not be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RAISE EXCEPTION 'queue "%" does not exist', queue_name
        USING ERRCODE = 'undefined_table',
              HINT = 'Create it with pgmq.create(), or list queues with pgmq.list_queues().';
END
$$;

-- Quoted, schema-qualified name of an existing queue's table ('q' queue, 'a' archive).
-- This runs on every API call, so it is a plain SQL expression that the planner inlines into
-- the caller (no PL/pgSQL call): two string operations and one syscache probe (to_regclass),
-- no catalog scan. A name that cannot be a queue never matches a queue table, and names are
-- validated when a queue is created.
CREATE OR REPLACE FUNCTION pgmq_ext.queue_table(queue_name text, prefix text DEFAULT 'q')
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
    WHEN length(queue_name) <= 47
     AND to_regclass(
            'pgmq.' || quote_ident(prefix || '_' || lower(queue_name COLLATE "C"))) IS NOT NULL
    THEN 'pgmq.' || quote_ident(prefix || '_' || lower(queue_name COLLATE "C"))
    ELSE pgmq_ext.no_such_queue(queue_name)
END;

-- Quoted name of a queue's archive table, for a queue already resolved by queue_table().
CREATE OR REPLACE FUNCTION pgmq_ext.archive_table(queue_name text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'pgmq.' || quote_ident('a_' || lower(queue_name COLLATE "C"));

-- Serialize DDL on one queue (create, drop, notify setup, partition maintenance) until the end
-- of the transaction: two sessions creating the same queue at once end with one queue.
CREATE OR REPLACE FUNCTION pgmq_ext.lock_queue(queue_name text)
RETURNS void
LANGUAGE sql
AS $$
    SELECT pg_advisory_xact_lock(hashtextextended('pgmq queue ' || queue_name, 0))
$$;

-- Storage parameters of queue tables (and of each partition of a partitioned queue).
-- A queue table is churned: every message is inserted, updated by each read (a new row
-- version; vt is indexed, so not HOT) and deleted, while the table itself stays small.
-- * fillfactor 70 leaves room on each page for the row versions reads create, so they stay on
--   the same page instead of extending the table.
-- * Vacuum after 1% of the rows (+100) are dead instead of PostgreSQL's 20% (+50): dead rows
--   at the head of the msg_id index are what every read walks over first, and a backlog of a
--   million rows would otherwise wait for 200,000 dead rows.
-- * No cost delay: these tables are small, so an unthrottled vacuum finishes in milliseconds
--   instead of lagging behind the churn.
-- * Analyze just as often, so the planner knows how many rows are visible (vt) when it picks
--   between the msg_id and vt indexes.
CREATE OR REPLACE FUNCTION pgmq_ext.queue_storage()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'fillfactor = 70, '
    || 'autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 100, '
    || 'autovacuum_vacuum_cost_delay = 0, '
    || 'autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 100';

-- Column definitions shared by queue and archive tables, after msg_id (API column order).
CREATE OR REPLACE FUNCTION pgmq_ext.message_columns()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'read_ct integer NOT NULL DEFAULT 0, '
    || 'enqueued_at timestamptz NOT NULL DEFAULT now(), '
    || 'last_read_at timestamptz, '
    || 'vt timestamptz NOT NULL, '
    || 'message jsonb, '
    || 'headers jsonb';
