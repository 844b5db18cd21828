-- Application tables of the work-order example (pipelines/work_orders.yaml, reports.yaml).
--
-- These belong to the application, not to orchestrator: `orchestrator apply` does not create
-- them. Create them with `python -m pipelines.demo --tables-only` (or run this file with psql).
-- Every statement is idempotent, so running the file again changes nothing.
--
-- Each step writes to its own table, so the concurrent steps of one run (sap_sync and email)
-- never update the same row and cannot block or deadlock each other.

-- One row per work order, keyed by its number: importing the same order again updates it.
CREATE TABLE IF NOT EXISTS work_orders (
    work_order_no text PRIMARY KEY CHECK (work_order_no ~ '^[A-Z0-9][A-Z0-9-]{2,31}$'),
    material text NOT NULL,
    description text NOT NULL,
    quantity integer NOT NULL CHECK (quantity > 0),
    unit text NOT NULL DEFAULT 'PC',
    plant text NOT NULL,
    due_date date NOT NULL,
    planner_email text,
    source text,
    source_line integer,
    run_id uuid,
    status text NOT NULL DEFAULT 'imported'
        CHECK (status IN ('imported', 'labelled', 'completed')),
    imported_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX IF NOT EXISTS work_orders_imported_at ON work_orders (imported_at);

-- The label of a work order: a Code 128 barcode rendered as SVG.
CREATE TABLE IF NOT EXISTS barcodes (
    work_order_no text PRIMARY KEY REFERENCES work_orders ON DELETE CASCADE,
    symbology text NOT NULL,
    code text NOT NULL,
    svg text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- What SAP answered for a work order (the last successful sync).
CREATE TABLE IF NOT EXISTS sap_sync (
    work_order_no text PRIMARY KEY REFERENCES work_orders ON DELETE CASCADE,
    sap_order text NOT NULL,
    http_status integer NOT NULL,
    replayed boolean NOT NULL DEFAULT false,
    attempts integer NOT NULL,
    idempotency_key text NOT NULL,
    run_id uuid,
    synced_at timestamptz NOT NULL DEFAULT now()
);

-- Mails sent: one row per message, keyed by its Message-ID (derived from the step's
-- idempotency key), so a redelivered step finds its mail already sent.
CREATE TABLE IF NOT EXISTS notifications (
    message_id text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('work_order', 'report')),
    work_order_no text REFERENCES work_orders ON DELETE CASCADE,
    report_day date,
    run_id uuid,
    recipients text[] NOT NULL,
    subject text NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS notifications_work_order_no ON notifications (work_order_no);

-- One report per day: figures gathered by `collect`, text by `render`, mailed by `deliver`.
CREATE TABLE IF NOT EXISTS reports (
    day date NOT NULL,
    timezone text NOT NULL,
    figures jsonb NOT NULL,
    body text,
    attachment_csv text,
    run_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    rendered_at timestamptz,
    delivered_at timestamptz,
    delivered_to text[],
    PRIMARY KEY (day, timezone)
);
