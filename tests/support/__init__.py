"""Helpers shared by the test suites, and the servers they start beside the test PostgreSQL
(PgBouncer in transaction mode, a TLS endpoint)."""
