-- Version 4: pgmq.metrics_result gains PGMQ 1.13's last column, default_partition_length: the
-- estimated rows in a partitioned queue's default partitions (queue and archive; rows there
-- mean partition maintenance is behind), NULL for a queue that is not partitioned.
ALTER TYPE pgmq.metrics_result ADD ATTRIBUTE default_partition_length bigint;
