"""Operations: what users run next to the workers to see, repair and keep up their pipelines.

Owns the read models and repairs behind `orchestrator status`, `dlq`, `trace` and `maintain`
(status, dlq, trace, maintain), the schedules that start runs (`schedules.fire_due`, called by
the runtime's leader). It is the one owner of the upkeep (maintenance and schedules); the
runtime's leader only decides when to run it. Its terminal rendering lives in the CLI
(`cli/views.py`, `cli/format.py`, `cli/progress.py`): the read models here are shared by every
face. Works from the applied pipelines in the database, read through `orchestrator.state`,
never from YAML. Its SQL lives in `ops/sql/queries.sql` and in the `orchestrator.ops_*`
functions of `store/sql/functions/5x_ops_*.sql`.
Must not import: runtime, cli.
"""
