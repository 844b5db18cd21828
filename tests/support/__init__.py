"""Real servers the tests start beside the test PostgreSQL: PgBouncer, a TLS server."""
