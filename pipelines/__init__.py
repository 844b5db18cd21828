"""The work-order application: pipeline files, their handlers, stand-ins, sample data, demo.

- `*.yaml`: the pipelines (`work_orders`: import, barcode, SAP sync, e-mail, completion;
  `reports`: the daily report on a schedule), applied with `orchestrator apply`.
- `handlers/`: the step handlers and what they use (SAP client, mail, labels, CSV rows).
- `sql/`: the application's tables and queries (created by `python -m pipelines.demo
  --tables-only`, not by orchestrator).
- `standins/`: a local SAP endpoint and SMTP sink for the demo and the tests.
- `data/`: a deterministic sample of work orders; `demo.py`: `make demo`.
"""
