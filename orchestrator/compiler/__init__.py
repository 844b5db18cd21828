"""The compiler: pipeline models -> desired database state -> plan -> SQL -> apply.

Owns: the `orchestrator` schema (pipeline metadata, join state), reading the current catalog,
diffing, rendering DDL from sandboxed jinja2 templates, applying under an advisory lock.
Must not import: runtime, ops, cli.
"""
