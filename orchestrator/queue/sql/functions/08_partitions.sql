-- Partitioned queues: native declarative RANGE partitioning, no pg_partman.
--
-- pgmq.q_<name> and pgmq.a_<name> are partitioned parents. A partition interval that parses
-- as an integer partitions both by msg_id; otherwise it is a time interval and the queue is
-- partitioned by enqueued_at, the archive by archived_at.
--
-- Partitions live in schema pgmq_ext, so no partition name can ever equal the table of another
-- queue in schema pgmq. They are named <parent>_p<start>: the first msg_id, or the UTC start
-- time as YYYYMM (month intervals), YYYYMMDD (whole days) or YYYYMMDDHH24MI. Each parent also
-- has a DEFAULT partition, <parent>_default: the safety net that takes rows no partition
-- covers, so a send never fails because maintenance is late.
--
-- Partitions are numbered by "bin": bin n of a msg_id partitioning holds msg_ids
-- [n * interval, (n + 1) * interval); bin n of a time partitioning starts n intervals after
-- 1970-01-01 00:00 UTC (for month intervals, n * months after January 1970).
--
-- pgmq_ext.run_maintenance() keeps them in shape: it creates the partitions of the current
-- bin and `premake` bins ahead (and of any bin between the newest partition and the current
-- one that is not past retention), moves rows out of the default partition into partitions of
-- their own, and drops partitions entirely past retention (queue and archive alike; dropping
-- a queue partition drops its unread messages, as retention means).
--
-- Locking. A table that needs work is locked ACCESS EXCLUSIVE (LOCK TABLE ONLY: the parent
-- alone) before any of its partitions, the queue table before its archive, for two reasons:
-- * ATTACH PARTITION alone takes only SHARE UPDATE EXCLUSIVE on the parent, but an INSERT
--   already running routes rows with the partition list it started with; a row it sends to
--   the default partition after the new partition is attached fails the default partition's
--   new constraint ("violates partition constraint"). No statement may run on the table
--   while its partitions change.
-- * DROP of a partition locks the parent ACCESS EXCLUSIVE anyway. Taking that lock last,
--   while holding the default partition, deadlocks with a reader that holds the parent and
--   waits for the default partition (and the reader, waiting longer, is the one aborted).
-- Every API statement locks the parent first too (archive(): the queue, then the archive),
-- so maintenance and the API never wait for each other in a cycle. Maintenance that finds
-- nothing to do takes no table lock at all; when it has work, the queue stops for the few
-- milliseconds it takes (or up to lock_timeout while it waits; see run_maintenance).

-- Months in an interval (its year and month fields).
CREATE OR REPLACE FUNCTION pgmq_ext.interval_months(step interval)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (extract(year FROM step) * 12 + extract(month FROM step))::integer;

-- Seconds in an interval without its months (days count as 24 hours).
CREATE OR REPLACE FUNCTION pgmq_ext.interval_seconds(step interval)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN extract(epoch FROM step - make_interval(months => pgmq_ext.interval_months(step)));

-- A time interval from text, with an error naming the argument.
CREATE OR REPLACE FUNCTION pgmq_ext.parse_interval(value text, what text)
RETURNS interval
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN value::interval;
EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
    RAISE EXCEPTION '% % is neither a whole number (of messages) nor a time interval such as ''1 day''',
        what, quote_literal(value)
        USING ERRCODE = 'invalid_parameter_value';
END
$$;

-- Check create_partitioned's intervals and turn them into a partition_config row.
CREATE OR REPLACE FUNCTION pgmq_ext.partition_settings(qname text, partition_interval text, retention_interval text)
RETURNS pgmq_ext.partition_config
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    cfg pgmq_ext.partition_config;
    by_id boolean := partition_interval ~ '^\s*[-+]?[0-9]+\s*$';
BEGIN
    IF partition_interval IS NULL OR retention_interval IS NULL THEN
        RAISE EXCEPTION 'partition_interval and retention_interval must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF by_id <> (retention_interval ~ '^\s*[-+]?[0-9]+\s*$') THEN
        RAISE EXCEPTION 'partition_interval % and retention_interval % must both be numbers of messages or both be time intervals',
            quote_literal(partition_interval), quote_literal(retention_interval)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cfg.queue_name := qname;
    cfg.partition_interval := partition_interval;
    cfg.retention_interval := retention_interval;
    cfg.premake := 4;
    IF by_id THEN
        cfg.partition_by := 'msg_id';
        cfg.id_interval := pgmq_ext.positive_bigint(partition_interval, 'partition_interval');
        cfg.id_retention := pgmq_ext.positive_bigint(retention_interval, 'retention_interval');
    ELSE
        cfg.partition_by := 'time';
        cfg.time_interval := pgmq_ext.parse_interval(partition_interval, 'partition_interval');
        cfg.time_retention := pgmq_ext.parse_interval(retention_interval, 'retention_interval');
        PERFORM pgmq_ext.check_time_settings(cfg);
    END IF;
    RETURN cfg;
END
$$;

CREATE OR REPLACE FUNCTION pgmq_ext.positive_bigint(value text, what text)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    result bigint;
BEGIN
    result := trim(value)::bigint;
    IF result <= 0 THEN
        RAISE EXCEPTION '% must be greater than 0, got %', what, quote_literal(value)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN result;
EXCEPTION WHEN numeric_value_out_of_range THEN
    RAISE EXCEPTION '% % is too large', what, quote_literal(value)
        USING ERRCODE = 'invalid_parameter_value';
END
$$;

-- A partition interval is either whole months ('1 month', '1 year') or a fixed length of at
-- least a minute ('1 day', '6 hours'): bins must have a well-defined start, and partition names
-- have minute resolution. Retention must be positive.
CREATE OR REPLACE FUNCTION pgmq_ext.check_time_settings(cfg pgmq_ext.partition_config)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    months integer := pgmq_ext.interval_months(cfg.time_interval);
    seconds numeric := pgmq_ext.interval_seconds(cfg.time_interval);
BEGIN
    IF NOT ((months > 0 AND seconds = 0) OR (months = 0 AND seconds >= 60)) THEN
        RAISE EXCEPTION 'partition_interval % must be whole months or a fixed length of at least 1 minute (such as ''1 day'' or ''6 hours'')',
            quote_literal(cfg.partition_interval)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cfg.time_retention <= interval '0' THEN
        RAISE EXCEPTION 'retention_interval must be greater than 0, got %', quote_literal(cfg.retention_interval)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- The bin that holds a msg_id.
CREATE OR REPLACE FUNCTION pgmq_ext.key_bin(cfg pgmq_ext.partition_config, id bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN floor(id::numeric / (cfg).id_interval)::bigint;

-- The bin that holds a timestamp.
CREATE OR REPLACE FUNCTION pgmq_ext.key_bin(cfg pgmq_ext.partition_config, ts timestamptz)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN pgmq_ext.interval_months((cfg).time_interval) > 0 THEN
        floor(((extract(year FROM ts AT TIME ZONE 'UTC') - 1970) * 12
               + extract(month FROM ts AT TIME ZONE 'UTC') - 1)
              / pgmq_ext.interval_months((cfg).time_interval))::bigint
    ELSE
        floor(extract(epoch FROM ts) / pgmq_ext.interval_seconds((cfg).time_interval))::bigint
END;

-- Start of a time bin.
CREATE OR REPLACE FUNCTION pgmq_ext.bin_start_time(cfg pgmq_ext.partition_config, bin bigint)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN pgmq_ext.interval_months((cfg).time_interval) > 0 THEN
        (timestamp '1970-01-01'
         + make_interval(months => (bin * pgmq_ext.interval_months((cfg).time_interval))::integer))
        AT TIME ZONE 'UTC'
    ELSE
        to_timestamp((bin * pgmq_ext.interval_seconds((cfg).time_interval))::double precision)
END;

-- Start of a bin as a literal for FOR VALUES FROM (...) TO (...) and for comparisons.
CREATE OR REPLACE FUNCTION pgmq_ext.bin_start(cfg pgmq_ext.partition_config, bin bigint)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE (cfg).partition_by
    WHEN 'msg_id' THEN (bin * (cfg).id_interval)::text
    ELSE to_char(pgmq_ext.bin_start_time(cfg, bin) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'
END;

-- Name suffix of a bin's partition.
CREATE OR REPLACE FUNCTION pgmq_ext.bin_suffix(cfg pgmq_ext.partition_config, bin bigint)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'p' || CASE
    WHEN (cfg).partition_by = 'msg_id' THEN (bin * (cfg).id_interval)::text
    ELSE to_char(
        pgmq_ext.bin_start_time(cfg, bin) AT TIME ZONE 'UTC',
        CASE
            WHEN pgmq_ext.interval_months((cfg).time_interval) > 0 THEN 'YYYYMM'
            WHEN pgmq_ext.interval_seconds((cfg).time_interval) % 86400 = 0 THEN 'YYYYMMDD'
            ELSE 'YYYYMMDDHH24MI'
        END)
END;

-- The bin a partition holds, from the lower bound in its FOR VALUES clause.
CREATE OR REPLACE FUNCTION pgmq_ext.bound_bin(cfg pgmq_ext.partition_config, lower_bound text)
RETURNS bigint
LANGUAGE sql STABLE
RETURN CASE (cfg).partition_by
    WHEN 'msg_id' THEN pgmq_ext.key_bin(cfg, lower_bound::bigint)
    ELSE pgmq_ext.key_bin(cfg, lower_bound::timestamptz)
END;

-- True when all of bin `bin` is past retention: its end is more than `retention` messages
-- behind the newest msg_id, or older than now minus the retention interval.
CREATE OR REPLACE FUNCTION pgmq_ext.bin_expired(cfg pgmq_ext.partition_config, bin bigint, current_id bigint)
RETURNS boolean
LANGUAGE sql STABLE
RETURN CASE (cfg).partition_by
    WHEN 'msg_id' THEN (bin + 1) * (cfg).id_interval <= current_id - (cfg).id_retention
    ELSE pgmq_ext.bin_start_time(cfg, bin + 1) <= clock_timestamp() - (cfg).time_retention
END;

-- The bin new rows go to: the newest msg_id's, or now's.
CREATE OR REPLACE FUNCTION pgmq_ext.current_bin(cfg pgmq_ext.partition_config, current_id bigint)
RETURNS bigint
LANGUAGE sql STABLE
RETURN CASE (cfg).partition_by
    WHEN 'msg_id' THEN pgmq_ext.key_bin(cfg, current_id)
    ELSE pgmq_ext.key_bin(cfg, clock_timestamp())
END;

-- The oldest bin not past retention (see bin_expired).
CREATE OR REPLACE FUNCTION pgmq_ext.first_live_bin(cfg pgmq_ext.partition_config, current_id bigint)
RETURNS bigint
LANGUAGE sql STABLE
RETURN CASE (cfg).partition_by
    WHEN 'msg_id' THEN pgmq_ext.key_bin(cfg, current_id - (cfg).id_retention)
    ELSE pgmq_ext.key_bin(cfg, clock_timestamp() - (cfg).time_retention)
END;

-- `<parent>_<suffix>`, shortened with a hash of the parent's name if it would not fit in an
-- identifier (63 bytes; names are ASCII).
CREATE OR REPLACE FUNCTION pgmq_ext.partition_name(parent text, suffix text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN length(parent) + 1 + length(suffix) <= 63 THEN parent || '_' || suffix
    ELSE left(parent, 63 - 10 - length(suffix)) || '_' || left(md5(parent), 8) || '_' || suffix
END;

-- Partitions of a partitioned table (quoted, qualified) with the lower bound of their range,
-- NULL for the default partition.
CREATE OR REPLACE FUNCTION pgmq_ext.partitions_of(parent regclass)
RETURNS TABLE (partition_name text, lower_bound text)
LANGUAGE sql STABLE
AS $$
    SELECT format('%I.%I', n.nspname, c.relname),
           substring(pg_catalog.pg_get_expr(c.relpartbound, c.oid)
                     FROM '^FOR VALUES FROM \(''?([^'')]*)''?\) TO')
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE i.inhparent = parent
$$;

-- Bins without a partition that `parent_table` should have: the current bin and `premake`
-- bins ahead, every bin between the newest partition and the current one that is not past
-- retention (so a queue that outran maintenance has no gaps), and the bins in `extra` (those
-- the default partition holds rows of).
CREATE OR REPLACE FUNCTION pgmq_ext.missing_bins(cfg pgmq_ext.partition_config, parent_table text, current_id bigint, extra bigint[])
RETURNS bigint[]
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    existing bigint[];
    current_bin bigint := pgmq_ext.current_bin(cfg, current_id);
    first_bin bigint;
BEGIN
    existing := ARRAY(
        SELECT pgmq_ext.bound_bin(cfg, p.lower_bound)
          FROM pgmq_ext.partitions_of(parent_table::regclass) p
         WHERE p.lower_bound IS NOT NULL);
    first_bin := least(current_bin,
                       greatest(coalesce((SELECT max(b) + 1 FROM unnest(existing) b), current_bin),
                                pgmq_ext.first_live_bin(cfg, current_id)));
    RETURN ARRAY(
        SELECT DISTINCT w.b
          FROM (SELECT generate_series(first_bin, current_bin + cfg.premake) AS b
                UNION ALL
                SELECT unnest(extra)) w
         WHERE w.b <> ALL (existing)
         ORDER BY w.b);
END
$$;

-- Range partitions of `parent_table` entirely past retention, oldest first.
CREATE OR REPLACE FUNCTION pgmq_ext.expired_partitions(cfg pgmq_ext.partition_config, parent_table text, current_id bigint)
RETURNS SETOF text
LANGUAGE sql STABLE
AS $$
    SELECT p.partition_name
      FROM pgmq_ext.partitions_of(parent_table::regclass) p
     WHERE p.lower_bound IS NOT NULL
       AND pgmq_ext.bin_expired(cfg, pgmq_ext.bound_bin(cfg, p.lower_bound), current_id)
     ORDER BY pgmq_ext.bound_bin(cfg, p.lower_bound)
$$;

CREATE OR REPLACE FUNCTION pgmq_ext.has_rows(table_name text)
RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    found_row boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT FROM %s)', table_name) INTO found_row;
    RETURN found_row;
END
$$;

-- The default partition of a queue's table (`prefix` 'q' or 'a'), quoted.
CREATE OR REPLACE FUNCTION pgmq_ext.default_partition(qname text, prefix text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'pgmq_ext.' || quote_ident(pgmq_ext.partition_name(prefix || '_' || qname, 'default'));

-- True when maintenance has something to do on one table of a queue: a partition to create,
-- rows in the default partition, or a partition to drop. Reads the catalog and at most one
-- row of the default partition; takes no lock on the partitioned table.
CREATE OR REPLACE FUNCTION pgmq_ext.table_needs_work(cfg pgmq_ext.partition_config, prefix text, current_id bigint)
RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    parent_table text := 'pgmq.' || quote_ident(prefix || '_' || cfg.queue_name);
BEGIN
    RETURN pgmq_ext.missing_bins(cfg, parent_table, current_id, '{}') <> '{}'
        OR pgmq_ext.has_rows(pgmq_ext.default_partition(cfg.queue_name, prefix))
        OR EXISTS (SELECT FROM pgmq_ext.expired_partitions(cfg, parent_table, current_id));
END
$$;

-- Create the partition of bin `bin` beside the partitioned table `parent` (unquoted name in
-- schema pgmq), moving the rows of that range out of the default partition, and return the
-- number of rows moved. The partition is built as a plain table, filled, and then attached
-- (CREATE TABLE ... PARTITION OF would fail while the default partition holds rows of the
-- range). The caller holds the parent's ACCESS EXCLUSIVE lock (see the top of this file).
CREATE OR REPLACE FUNCTION pgmq_ext.create_partition(cfg pgmq_ext.partition_config, parent text, bin bigint, OUT partition_name text, OUT moved_rows bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    is_queue boolean := left(parent, 2) = 'q_';
    key text := CASE
        WHEN cfg.partition_by = 'msg_id' THEN 'msg_id'
        WHEN is_queue THEN 'enqueued_at'
        ELSE 'archived_at' END;
    lo text := pgmq_ext.bin_start(cfg, bin);
    hi text := pgmq_ext.bin_start(cfg, bin + 1);
BEGIN
    partition_name := 'pgmq_ext.' || quote_ident(pgmq_ext.partition_name(parent, pgmq_ext.bin_suffix(cfg, bin)));
    EXECUTE format('CREATE TABLE %s (LIKE pgmq.%I INCLUDING DEFAULTS)%s',
        partition_name, parent,
        CASE WHEN is_queue THEN ' WITH (' || pgmq_ext.queue_storage() || ')' ELSE '' END);
    EXECUTE format(
        'WITH moved AS (DELETE FROM pgmq_ext.%I WHERE %I >= %L AND %I < %L RETURNING *) '
        'INSERT INTO %s SELECT * FROM moved',
        pgmq_ext.partition_name(parent, 'default'), key, lo, key, hi, partition_name);
    GET DIAGNOSTICS moved_rows = ROW_COUNT;
    EXECUTE format('ALTER TABLE pgmq.%I ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)',
        parent, partition_name, lo, hi);
END
$$;

-- Bring one partitioned table (`prefix` 'q' or 'a') of a queue up to date: create the missing
-- partitions (see missing_bins), emptying the default partition into them, then drop the
-- partitions past retention. The caller holds the table's ACCESS EXCLUSIVE lock.
CREATE OR REPLACE FUNCTION pgmq_ext.maintain_table(cfg pgmq_ext.partition_config, prefix text, current_id bigint)
RETURNS SETOF pgmq_ext.maintenance_action
LANGUAGE plpgsql
AS $$
DECLARE
    parent text := prefix || '_' || cfg.queue_name;
    parent_table text := 'pgmq.' || quote_ident(parent);
    default_table text := pgmq_ext.default_partition(cfg.queue_name, prefix);
    key text := CASE
        WHEN cfg.partition_by = 'msg_id' THEN 'msg_id'
        WHEN prefix = 'q' THEN 'enqueued_at'
        ELSE 'archived_at' END;
    default_bins bigint[];
    bin bigint;
    made record;
    expired text;
BEGIN
    EXECUTE format('SELECT array_agg(DISTINCT pgmq_ext.key_bin($1, %I)) FROM %s', key, default_table)
        INTO default_bins USING cfg;
    FOREACH bin IN ARRAY pgmq_ext.missing_bins(cfg, parent_table, current_id, coalesce(default_bins, '{}')) LOOP
        made := pgmq_ext.create_partition(cfg, parent, bin);
        RETURN NEXT ROW(cfg.queue_name, parent_table, 'created', made.partition_name,
                        made.moved_rows, NULL)::pgmq_ext.maintenance_action;
    END LOOP;
    FOR expired IN SELECT * FROM pgmq_ext.expired_partitions(cfg, parent_table, current_id) LOOP
        EXECUTE format('DROP TABLE %s', expired);
        RETURN NEXT ROW(cfg.queue_name, parent_table, 'dropped', expired,
                        0, 'past retention')::pgmq_ext.maintenance_action;
    END LOOP;
END
$$;

-- Maintain both tables of one partitioned queue, under the queue's lock. The tables that need
-- work are locked first, the queue before its archive (see the top of this file).
CREATE OR REPLACE FUNCTION pgmq_ext.maintain_queue(qname text)
RETURNS SETOF pgmq_ext.maintenance_action
LANGUAGE plpgsql
AS $$
DECLARE
    cfg pgmq_ext.partition_config;
    q_table text := 'pgmq.' || quote_ident('q_' || qname);
    a_table text := 'pgmq.' || quote_ident('a_' || qname);
    current_id bigint;
    q_work boolean;
    a_work boolean;
BEGIN
    PERFORM pgmq_ext.lock_queue(qname);
    SELECT * INTO cfg FROM pgmq_ext.partition_config c WHERE c.queue_name = qname;
    IF NOT FOUND THEN
        RETURN;  -- dropped meanwhile, or not partitioned
    END IF;
    current_id := pgmq_ext.total_messages(q_table);
    q_work := pgmq_ext.table_needs_work(cfg, 'q', current_id);
    a_work := pgmq_ext.table_needs_work(cfg, 'a', current_id);
    IF q_work THEN
        EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', q_table);
    END IF;
    IF a_work THEN
        EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', a_table);
    END IF;
    -- Sends may have gone on while we waited for the locks.
    current_id := pgmq_ext.total_messages(q_table);
    IF q_work THEN
        RETURN QUERY SELECT * FROM pgmq_ext.maintain_table(cfg, 'q', current_id);
    END IF;
    IF a_work THEN
        RETURN QUERY SELECT * FROM pgmq_ext.maintain_table(cfg, 'a', current_id);
    END IF;
    UPDATE pgmq_ext.partition_config c SET maintained_at = now() WHERE c.queue_name = qname;
END
$$;

-- Partition upkeep for one partitioned queue or (NULL) all of them; returns what it did.
-- Call it periodically (the runtime does), more often than the partition interval; `premake`
-- partitions ahead give slack. Each queue is maintained in a subtransaction: a queue that is
-- busy (lock_timeout, 1s unless the caller set one: waiting longer would stall the queue's
-- readers and writers behind the ACCESS EXCLUSIVE request) is reported as 'skipped', one that
-- fails as 'failed', and the others go on. Maintaining each queue in its own transaction (as
-- orchestrator.queue.maintenance does) keeps the locks short.
CREATE OR REPLACE FUNCTION pgmq_ext.run_maintenance(queue_name text DEFAULT NULL)
RETURNS SETOF pgmq_ext.maintenance_action
LANGUAGE plpgsql
AS $$
DECLARE
    qname text;
    done pgmq_ext.maintenance_action[];
BEGIN
    IF queue_name IS NOT NULL THEN
        PERFORM pgmq_ext.queue_table(queue_name);
    END IF;
    IF current_setting('lock_timeout') = '0' THEN
        PERFORM set_config('lock_timeout', '1s', true);
    END IF;
    FOR qname IN
        SELECT c.queue_name FROM pgmq_ext.partition_config c
         WHERE run_maintenance.queue_name IS NULL
            OR c.queue_name = lower(run_maintenance.queue_name COLLATE "C")
         ORDER BY c.queue_name
    LOOP
        BEGIN
            done := ARRAY(SELECT a FROM pgmq_ext.maintain_queue(qname) a);
        EXCEPTION
            WHEN lock_not_available THEN
                done := ARRAY[ROW(qname, NULL, 'skipped', NULL, 0,
                                  'the queue is busy (lock timeout); run maintenance again later')
                              ::pgmq_ext.maintenance_action];
            WHEN OTHERS THEN
                done := ARRAY[ROW(qname, NULL, 'failed', NULL, 0, SQLSTATE || ': ' || SQLERRM)
                              ::pgmq_ext.maintenance_action];
        END;
        RETURN QUERY SELECT * FROM unnest(done);
    END LOOP;
END
$$;

-- Create a partitioned queue (see the top of this file), with partitions for `premake`
-- intervals ahead. Idempotent like create().
CREATE OR REPLACE FUNCTION pgmq.create_partitioned(
    queue_name text,
    partition_interval text DEFAULT '10000',
    retention_interval text DEFAULT '100000',
    premake integer DEFAULT 4
)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    qname text := pgmq_ext.queue_name(queue_name);
    cfg pgmq_ext.partition_config := pgmq_ext.partition_settings(qname, partition_interval, retention_interval);
BEGIN
    IF premake IS NULL OR premake < 1 OR premake > 1000 THEN
        RAISE EXCEPTION 'premake must be at least 1, got %', coalesce(premake::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'premake is the number of partitions made ahead, 1 to 1000.';
    END IF;
    cfg.premake := premake;
    IF NOT pgmq_ext.claim_queue_name(qname) THEN
        RETURN;
    END IF;
    PERFORM pgmq_ext.create_partitioned_tables(qname, cfg.partition_by = 'msg_id');
    INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged) VALUES (qname, true, false);
    INSERT INTO pgmq_ext.partition_config SELECT cfg.*;
    PERFORM pgmq_ext.maintain_queue(qname);
    PERFORM pgmq_ext.create_queue_functions(qname);
END
$$;

-- The partitioned parents and their default partitions. msg_id is a bigserial, not an
-- identity column: identity columns on partitioned tables need PostgreSQL 17. A time-partitioned
-- table's primary key must contain its partition key, so it is (msg_id, enqueued_at) or
-- (msg_id, archived_at); msg_id comes first, so lookups by msg_id still use it.
CREATE OR REPLACE FUNCTION pgmq_ext.create_partitioned_tables(qname text, by_id boolean)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    q text := 'q_' || qname;
    a text := 'a_' || qname;
BEGIN
    EXECUTE format(
        'CREATE TABLE pgmq.%I (msg_id bigserial NOT NULL, %s, PRIMARY KEY (msg_id%s)) PARTITION BY RANGE (%s)',
        q, pgmq_ext.message_columns(),
        CASE WHEN by_id THEN '' ELSE ', enqueued_at' END,
        CASE WHEN by_id THEN 'msg_id' ELSE 'enqueued_at' END);
    EXECUTE format('CREATE INDEX ON pgmq.%I (vt)', q);
    EXECUTE format('CREATE TABLE pgmq_ext.%I PARTITION OF pgmq.%I DEFAULT WITH (%s)',
        pgmq_ext.partition_name(q, 'default'), q, pgmq_ext.queue_storage());
    EXECUTE format(
        'CREATE TABLE pgmq.%I (msg_id bigint NOT NULL, %s, archived_at timestamptz NOT NULL DEFAULT now(), '
        'PRIMARY KEY (msg_id%s)) PARTITION BY RANGE (%s)',
        a, pgmq_ext.message_columns(),
        CASE WHEN by_id THEN '' ELSE ', archived_at' END,
        CASE WHEN by_id THEN 'msg_id' ELSE 'archived_at' END);
    EXECUTE format('CREATE INDEX ON pgmq.%I (archived_at)', a);
    EXECUTE format('CREATE TABLE pgmq_ext.%I PARTITION OF pgmq.%I DEFAULT',
        pgmq_ext.partition_name(a, 'default'), a);
END
$$;
