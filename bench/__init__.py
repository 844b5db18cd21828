"""Benchmarks of orchestrator against plain SQL on the same server (`python -m bench`)."""
