"""Operations: status, dead-letter handling, traces, read models over queues and archives."""
