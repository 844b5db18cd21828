-- Version 3: PGMQ 1.13 parity (topics, FIFO groups, compatibility overloads).
--
-- create_partitioned() gains PGMQ's `premake` argument: a new signature, so the old one goes
-- (the function files create the new one).
DROP FUNCTION IF EXISTS pgmq.create_partitioned(text, text, text);

-- Topic bindings (AMQP-style routing): a message sent with a routing key goes to every queue
-- bound by a pattern that matches it. `compiled_regex` is the pattern as an anchored regular
-- expression: `*` is exactly one dot-separated segment, `#` zero or more; the other
-- characters a pattern may hold ([a-zA-Z0-9_-] and `.`) are literal (the dot escaped).
-- A `#` next to a dot absorbs that dot, so `a.#` matches `a` and `#.b` matches `b`.
CREATE TABLE pgmq.topic_bindings (
    pattern text NOT NULL,
    queue_name text NOT NULL
        CONSTRAINT topic_bindings_meta_queue_name_fk
        REFERENCES pgmq.meta (queue_name) ON DELETE CASCADE,
    bound_at timestamptz NOT NULL DEFAULT now(),
    compiled_regex text GENERATED ALWAYS AS (
        '^' || replace(replace(replace(replace(replace(replace(
            pattern,
            '.', '\.'),
            '*', '[^.]+'),
            '\.#\.', '(\.[^.]+)*\.'),
            '#\.', '([^.]+\.)*'),
            '\.#', '(\.[^.]+)*'),
            '#', '.*')
        || '$'
    ) STORED,
    CONSTRAINT topic_bindings_unique_pattern_queue UNIQUE (pattern, queue_name)
);
CREATE INDEX topic_bindings_queue_name_idx ON pgmq.topic_bindings (queue_name);
