"""The runtime: workers that execute pipeline steps.

Owns: the step context, the atomic fenced hand-off, retries and dead letters, lease extension,
wake-ups, supervision of processes, graceful shutdown. Talks to Postgres only through the queue
layer and its own hand-off SQL; never parses YAML itself.
"""
