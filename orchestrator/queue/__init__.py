"""The PGMQ-compatible queue layer: SQL functions in package data, installer, async client.

Owns: schema `pgmq` (tables, types, functions of PGMQ's API, native partition maintenance),
`orchestrator install`, the `Queue` client and the synchronous `PGMQueue` facade.
Must not import: spec, compiler, runtime, ops, cli (it knows nothing of pipelines).
"""
