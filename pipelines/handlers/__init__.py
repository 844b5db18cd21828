"""Step handlers of the work-order pipelines and what they use.

`work_orders` and `reports` hold the handlers named in the YAML files; `csv_import` reads
work-order CSV files and starts runs; `barcodes`, `sap_client` and `mail` talk to the outside
world; `config` reads the environment; `sql` loads the application's SQL.
"""
