-- FIFO groups: grouped reads that keep the order of the messages of one group.
--
-- A message's group is headers->>'x-pgmq-group' (no header: one default group, as in PGMQ).
-- The head of a group is its oldest message (lowest msg_id), visible or not. A group is
-- eligible when its head is visible and no other transaction holds the head's row lock; a
-- read takes the group by locking its head (FOR UPDATE SKIP LOCKED, the visibility re-checked
-- on the newest row version), so concurrent readers never take one group at once. Behind the
-- head, a read takes the group's following messages only while they are consecutive, visible
-- and lockable: a later message is never delivered while an earlier one of its group is in
-- flight (vt in the future, or its row held by a hand-off), delayed or locked. A message whose
-- vt runs out is again its group's head, delivered before the rest of the group.
--
-- Cost. PGMQ aggregates over the whole queue table on every grouped read. Here, with the
-- group index (create_fifo_index: a btree on (group key, msg_id)), a read first looks at the
-- oldest visible messages (a few times qty of them): one whose group has no older message is
-- a head (one index probe each). That finds the heads when they are near the front, as they
-- are unless whole groups ahead are blocked. Otherwise the heads come from a skip scan: one
-- index probe per group (a recursive CTE). The messages behind the chosen heads come from an
-- index range each. The cost never grows with the number of messages waiting in a group,
-- only, at worst, with the number of groups. Without the index a read aggregates, like PGMQ.

-- The SQL of a message's group key (columns of table alias `alias`, none for ''); the group
-- index is on this expression, so the planner matches it.
CREATE OR REPLACE FUNCTION pgmq_ext.group_key_sql(alias text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN format('COALESCE((%sheaders ->> ''x-pgmq-group''::text), ''_default_fifo_group''::text)',
              CASE WHEN alias = '' THEN '' ELSE alias || '.' END);

-- Name of a queue's group index (in schema pgmq, beside its table).
CREATE OR REPLACE FUNCTION pgmq_ext.group_index_name(qname text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'q_' || qname || '_group_idx';

-- The index that makes grouped reads cheap at any depth. Idempotent; a partitioned queue gets
-- it on every partition.
CREATE OR REPLACE FUNCTION pgmq.create_fifo_index(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    tab text := pgmq_ext.queue_table(queue_name);
    qname text := lower(queue_name COLLATE "C");
BEGIN
    PERFORM pgmq_ext.lock_queue(qname);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s ((%s), msg_id)',
        pgmq_ext.group_index_name(qname), tab, pgmq_ext.group_key_sql(''));
END
$$;

CREATE OR REPLACE FUNCTION pgmq.create_fifo_indexes_all()
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    qname text;
BEGIN
    FOR qname IN SELECT m.queue_name FROM pgmq.meta m ORDER BY 1 LOOP
        PERFORM pgmq.create_fifo_index(qname);
    END LOOP;
END
$$;

-- Lock the heads of up to $2 eligible groups, oldest head first: $1 now, $2 how many.
-- Returns (head msg_ids, group keys), both in head order. `indexed`: skip scan over the group
-- index, else one aggregate over the table.
CREATE OR REPLACE FUNCTION pgmq_ext.group_heads_sql(tab text, indexed boolean)
RETURNS text
LANGUAGE sql STABLE
RETURN format(
    'WITH RECURSIVE g (k, msg_id) AS (%s) '
    'SELECT array_agg(h.msg_id ORDER BY h.msg_id), array_agg(h.k ORDER BY h.msg_id) FROM ('
    'SELECT q.msg_id, g.k FROM g JOIN %s q ON q.msg_id = g.msg_id WHERE q.vt <= $1 '
    'ORDER BY q.msg_id LIMIT $2 FOR UPDATE OF q SKIP LOCKED) h',
    CASE WHEN indexed THEN format(
        '(SELECT %1$s, q.msg_id FROM %2$s q ORDER BY 1, 2 LIMIT 1) UNION ALL '
        'SELECT n.k, n.msg_id FROM g CROSS JOIN LATERAL ('
        'SELECT %1$s AS k, q.msg_id FROM %2$s q WHERE %1$s > g.k ORDER BY 1, 2 LIMIT 1) n',
        pgmq_ext.group_key_sql('q'), tab)
    ELSE format('SELECT %s, min(q.msg_id) FROM %s q GROUP BY 1', pgmq_ext.group_key_sql('q'), tab)
    END,
    tab);

-- Lock the heads among the $3 oldest visible messages, up to $2 of them, oldest first: $1
-- now. Returns (head msg_ids, group keys, how many messages were looked at); when that count
-- is $3 there may be more heads further on. Needs the group index (the "no older message in
-- the group" probe).
CREATE OR REPLACE FUNCTION pgmq_ext.near_group_heads_sql(tab text)
RETURNS text
LANGUAGE sql STABLE
RETURN format(
    'WITH c AS MATERIALIZED (SELECT q.msg_id FROM %1$s q WHERE q.vt <= $1 ORDER BY q.msg_id LIMIT $3) '
    'SELECT array_agg(h.msg_id ORDER BY h.msg_id), array_agg(h.k ORDER BY h.msg_id), '
    '(SELECT count(*) FROM c) FROM ('
    'SELECT q.msg_id, %2$s AS k FROM c JOIN %1$s q ON q.msg_id = c.msg_id '
    'WHERE q.vt <= $1 AND NOT EXISTS (SELECT 1 FROM %1$s e WHERE %3$s = %2$s AND e.msg_id < q.msg_id) '
    'ORDER BY q.msg_id LIMIT $2 FOR UPDATE OF q SKIP LOCKED) h',
    tab, pgmq_ext.group_key_sql('q'), pgmq_ext.group_key_sql('e'));

-- The messages a grouped read would take beyond the locked heads, with the heads: $1 head
-- msg_ids, $2 their group keys (head order), $3 qty, $4 now. Behind each head, its group's
-- following messages up to the first one that is not visible. Returns (msg_id, group
-- priority, rank in group: 0 for the head) of the first $3 in selection order: group by group
-- (`round_robin` false) or rank by rank across groups (`round_robin` true).
CREATE OR REPLACE FUNCTION pgmq_ext.group_batch_sql(tab text, round_robin boolean)
RETURNS text
LANGUAGE sql STABLE
RETURN format(
    'SELECT array_agg(c.msg_id ORDER BY %3$s), array_agg(c.prio ORDER BY %3$s), '
    'array_agg(c.rank ORDER BY %3$s) FROM ('
    'SELECT c.* FROM ('
    'SELECT h.head AS msg_id, h.prio, 0::bigint AS rank FROM unnest($1::bigint[]) WITH ORDINALITY h (head, prio) '
    'UNION ALL '
    'SELECT x.msg_id, x.prio, x.rank FROM ('
    'SELECT x.*, min(x.rank) FILTER (WHERE x.vt > $4) OVER (PARTITION BY x.prio) AS stop FROM ('
    'SELECT n.msg_id, n.vt, h.prio, row_number() OVER (PARTITION BY h.prio ORDER BY n.msg_id) AS rank '
    'FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY h (head, k, prio) '
    'CROSS JOIN LATERAL (SELECT q.msg_id, q.vt FROM %1$s q WHERE %2$s = h.k AND q.msg_id > h.head '
    'ORDER BY %2$s, q.msg_id LIMIT $3) n) x) x '
    'WHERE x.stop IS NULL OR x.rank < x.stop) c '
    'ORDER BY %3$s LIMIT $3) c',
    tab, pgmq_ext.group_key_sql('q'),
    CASE WHEN round_robin THEN 'c.rank, c.prio' ELSE 'c.prio, c.rank' END);

-- Of the candidates (msg_ids, group priorities, ranks in selection order) keep the heads and
-- the messages behind them up to the first one another transaction holds (not in `locked`).
CREATE OR REPLACE FUNCTION pgmq_ext.consecutive_batch(
    ids bigint[], prios bigint[], ranks bigint[], locked bigint[]
)
RETURNS bigint[]
LANGUAGE sql IMMUTABLE
RETURN (
    SELECT array_agg(c.id ORDER BY c.ord)
      FROM unnest(ids, prios, ranks) WITH ORDINALITY AS c (id, prio, rank, ord)
     WHERE c.rank = 0 OR NOT EXISTS (
        SELECT 1 FROM unnest(ids, prios, ranks) AS d (id, prio, rank)
         WHERE d.prio = c.prio AND d.rank BETWEEN 1 AND c.rank AND d.id <> ALL (locked))
);

-- One grouped read: `mode` is 'fill' (read_grouped), 'rr' (read_grouped_rr) or 'head'
-- (read_grouped_head). Messages are returned in selection order.
CREATE OR REPLACE FUNCTION pgmq_ext.read_grouped(queue_name text, vt integer, qty integer, mode text)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
DECLARE
    tab text := pgmq_ext.queue_table(queue_name);
    indexed boolean := to_regclass('pgmq.' || quote_ident(
        pgmq_ext.group_index_name(lower(queue_name COLLATE "C")))) IS NOT NULL;
    now_ts timestamptz := clock_timestamp();
    heads bigint[];
    keys text[];
    ids bigint[];
    prios bigint[];
    ranks bigint[];
    locked bigint[];
    looked bigint;
    near bigint := 8 * qty::bigint + 64;  -- oldest visible messages to look at for heads
BEGIN
    PERFORM pgmq_ext.check_read(vt, qty);
    IF indexed THEN
        EXECUTE pgmq_ext.near_group_heads_sql(tab) INTO heads, keys, looked
            USING now_ts, qty, near;
    END IF;
    IF NOT indexed OR (coalesce(cardinality(heads), 0) < qty AND looked = near) THEN
        EXECUTE pgmq_ext.group_heads_sql(tab, indexed) INTO heads, keys USING now_ts, qty;
    END IF;
    IF heads IS NULL THEN
        RETURN;
    END IF;
    IF mode = 'head' OR qty = 1 OR (mode = 'rr' AND cardinality(heads) >= qty) THEN
        ids := heads;  -- the heads alone are the batch
    ELSE
        EXECUTE pgmq_ext.group_batch_sql(tab, mode = 'rr') INTO ids, prios, ranks
            USING heads, keys, qty, now_ts;
        EXECUTE format('SELECT array_agg(msg_id) FROM (SELECT msg_id FROM %s '
                       'WHERE msg_id = ANY ($1) AND vt <= $2 FOR UPDATE SKIP LOCKED) s', tab)
            INTO locked USING ids, now_ts;
        ids := pgmq_ext.consecutive_batch(ids, prios, ranks, coalesce(locked, '{}'));
    END IF;
    RETURN QUERY EXECUTE format(
        'WITH u AS (UPDATE %s q SET vt = $2, read_ct = q.read_ct + 1, last_read_at = $1 '
        'WHERE q.msg_id = ANY ($3) '
        'RETURNING q.msg_id, q.read_ct, q.enqueued_at, q.last_read_at, q.vt, q.message, q.headers) '
        'SELECT u.* FROM u ORDER BY array_position($3, u.msg_id)', tab)
        USING now_ts, now_ts + make_interval(secs => vt), ids;
END
$$;

-- A grouped read repeated every `poll_interval_ms` until it finds a message or
-- `max_poll_seconds` have passed (as read_with_poll).
CREATE OR REPLACE FUNCTION pgmq_ext.read_grouped_with_poll(
    queue_name text, vt integer, qty integer, max_poll_seconds integer, poll_interval_ms integer,
    mode text
)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $$
DECLARE
    deadline timestamptz;
BEGIN
    PERFORM pgmq_ext.check_read(vt, qty);
    PERFORM pgmq_ext.check_poll(max_poll_seconds, poll_interval_ms);
    deadline := clock_timestamp() + make_interval(secs => max_poll_seconds);
    LOOP
        RETURN QUERY SELECT * FROM pgmq_ext.read_grouped(queue_name, vt, qty, mode);
        IF FOUND OR clock_timestamp() >= deadline THEN
            RETURN;
        END IF;
        PERFORM pg_sleep(least(poll_interval_ms / 1000.0,
                               extract(epoch FROM deadline - clock_timestamp())));
    END LOOP;
END
$$;

-- SQS FIFO style: as many consecutive messages as possible from the group whose head is
-- oldest, then from the next group.
CREATE OR REPLACE FUNCTION pgmq.read_grouped(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $$
    SELECT * FROM pgmq_ext.read_grouped(queue_name, vt, qty, 'fill')
$$;

-- Layered round-robin: the head of each eligible group (oldest group first), then each
-- group's second message, and so on.
CREATE OR REPLACE FUNCTION pgmq.read_grouped_rr(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $$
    SELECT * FROM pgmq_ext.read_grouped(queue_name, vt, qty, 'rr')
$$;

-- At most one message per group: the heads of up to `qty` groups whose head is visible.
CREATE OR REPLACE FUNCTION pgmq.read_grouped_head(queue_name text, vt integer, qty integer)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $$
    SELECT * FROM pgmq_ext.read_grouped(queue_name, vt, qty, 'head')
$$;

CREATE OR REPLACE FUNCTION pgmq.read_grouped_with_poll(
    queue_name text, vt integer, qty integer,
    max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100
)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $$
    SELECT * FROM pgmq_ext.read_grouped_with_poll(queue_name, vt, qty, max_poll_seconds, poll_interval_ms, 'fill')
$$;

CREATE OR REPLACE FUNCTION pgmq.read_grouped_rr_with_poll(
    queue_name text, vt integer, qty integer,
    max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100
)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $$
    SELECT * FROM pgmq_ext.read_grouped_with_poll(queue_name, vt, qty, max_poll_seconds, poll_interval_ms, 'rr')
$$;

CREATE OR REPLACE FUNCTION pgmq.read_grouped_head_with_poll(
    queue_name text, vt integer, qty integer,
    max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100
)
RETURNS SETOF pgmq.message_record
LANGUAGE sql
AS $$
    SELECT * FROM pgmq_ext.read_grouped_with_poll(queue_name, vt, qty, max_poll_seconds, poll_interval_ms, 'head')
$$;
