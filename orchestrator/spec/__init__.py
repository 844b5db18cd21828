"""Pipeline specifications: YAML -> typed models -> graph, with file:line:col diagnostics.

Owns: loading YAML with marks and duplicate-key detection, the JSON Schema, the pydantic models,
graph checks (networkx), queue naming. Offline: must not import asyncpg, db, queue, compiler,
runtime.
"""
