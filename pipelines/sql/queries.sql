-- Queries of the work-order handlers. Each starts with a `-- name: <name>` line followed by a
-- one-line description; pipelines/handlers/sql.py loads them by name. Values are parameters.

-- name: upsert_work_order
-- Insert a work order or update it when a field changed; no row back when nothing changed.
INSERT INTO work_orders AS w
       (work_order_no, material, description, quantity, unit, plant, due_date, planner_email,
        source, source_line, run_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (work_order_no) DO UPDATE
   SET material = EXCLUDED.material,
       description = EXCLUDED.description,
       quantity = EXCLUDED.quantity,
       unit = EXCLUDED.unit,
       plant = EXCLUDED.plant,
       due_date = EXCLUDED.due_date,
       planner_email = EXCLUDED.planner_email,
       source = EXCLUDED.source,
       source_line = EXCLUDED.source_line,
       run_id = EXCLUDED.run_id,
       status = 'imported',
       updated_at = now(),
       completed_at = NULL
 WHERE (w.material, w.description, w.quantity, w.unit, w.plant, w.due_date, w.planner_email)
       IS DISTINCT FROM
       (EXCLUDED.material, EXCLUDED.description, EXCLUDED.quantity, EXCLUDED.unit,
        EXCLUDED.plant, EXCLUDED.due_date, EXCLUDED.planner_email)
RETURNING (xmax = 0) AS inserted;

-- name: get_work_order
-- One work order by number.
SELECT work_order_no, material, description, quantity, unit, plant, due_date, planner_email,
       status, run_id, imported_at, completed_at
  FROM work_orders
 WHERE work_order_no = $1;

-- name: save_barcode
-- Store (or replace) the label of a work order and mark the order labelled.
WITH label AS (
    INSERT INTO barcodes (work_order_no, symbology, code, svg)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (work_order_no) DO UPDATE
       SET symbology = EXCLUDED.symbology, code = EXCLUDED.code, svg = EXCLUDED.svg,
           created_at = now()
    RETURNING work_order_no
)
UPDATE work_orders w
   SET status = 'labelled', updated_at = now()
  FROM label
 WHERE w.work_order_no = label.work_order_no AND w.status = 'imported';

-- name: get_barcode
-- The label of a work order.
SELECT symbology, code, svg FROM barcodes WHERE work_order_no = $1;

-- name: get_sap_sync
-- What SAP answered last for a work order.
SELECT sap_order, http_status, replayed, attempts, idempotency_key, synced_at
  FROM sap_sync
 WHERE work_order_no = $1;

-- name: save_sap_sync
-- Record SAP's answer for a work order (the latest sync wins).
INSERT INTO sap_sync (work_order_no, sap_order, http_status, replayed, attempts,
                      idempotency_key, run_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (work_order_no) DO UPDATE
   SET sap_order = EXCLUDED.sap_order, http_status = EXCLUDED.http_status,
       replayed = EXCLUDED.replayed, attempts = EXCLUDED.attempts,
       idempotency_key = EXCLUDED.idempotency_key, run_id = EXCLUDED.run_id,
       synced_at = now();

-- name: get_notification
-- A mail already sent under this Message-ID, if any.
SELECT message_id, recipients, subject, sent_at FROM notifications WHERE message_id = $1;

-- name: last_work_order_notification
-- The last mail sent about a work order, if any.
SELECT message_id, recipients, subject, sent_at
  FROM notifications
 WHERE work_order_no = $1 AND kind = 'work_order'
 ORDER BY sent_at DESC
 LIMIT 1;

-- name: save_notification
-- Record a sent mail; a second record under the same Message-ID is ignored.
INSERT INTO notifications (message_id, kind, work_order_no, report_day, run_id, recipients,
                           subject)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (message_id) DO NOTHING;

-- name: complete_work_order
-- Mark a work order completed (keeps the first completion time); returns its plant.
UPDATE work_orders
   SET status = 'completed', completed_at = coalesce(completed_at, now()), updated_at = now()
 WHERE work_order_no = $1
RETURNING plant, completed_at;

-- name: day_bounds
-- Start and end (exclusive) of calendar day $1 in time zone $2.
SELECT ($1::date)::timestamp AT TIME ZONE $2 AS starts,
       ($1::date + 1)::timestamp AT TIME ZONE $2 AS ends;

-- name: day_totals
-- Figures of the work orders imported in [$1, $2).
SELECT count(*) AS imported,
       coalesce(sum(w.quantity), 0) AS quantity,
       count(*) FILTER (WHERE EXISTS (SELECT FROM barcodes b
                                       WHERE b.work_order_no = w.work_order_no)) AS labelled,
       count(*) FILTER (WHERE EXISTS (SELECT FROM sap_sync s
                                       WHERE s.work_order_no = w.work_order_no)) AS synced,
       count(*) FILTER (WHERE EXISTS (SELECT FROM notifications n
                                       WHERE n.work_order_no = w.work_order_no)) AS notified,
       count(*) FILTER (WHERE w.status = 'completed') AS completed
  FROM work_orders w
 WHERE w.imported_at >= $1 AND w.imported_at < $2;

-- name: day_by_plant
-- Per plant: orders, quantity, completed, and orders not (yet) in SAP, imported in [$1, $2).
SELECT w.plant,
       count(*) AS orders,
       sum(w.quantity) AS quantity,
       count(*) FILTER (WHERE w.status = 'completed') AS completed,
       count(*) FILTER (WHERE NOT EXISTS (SELECT FROM sap_sync s
                                           WHERE s.work_order_no = w.work_order_no))
           AS not_in_sap
  FROM work_orders w
 WHERE w.imported_at >= $1 AND w.imported_at < $2
 GROUP BY w.plant
 ORDER BY w.plant;

-- name: day_open_orders
-- Work orders imported in [$1, $2) that are not completed, oldest first, at most $3.
SELECT w.work_order_no, w.plant, w.status,
       EXISTS (SELECT FROM sap_sync s WHERE s.work_order_no = w.work_order_no) AS in_sap,
       EXISTS (SELECT FROM notifications n WHERE n.work_order_no = w.work_order_no) AS notified
  FROM work_orders w
 WHERE w.imported_at >= $1 AND w.imported_at < $2 AND w.status <> 'completed'
 ORDER BY w.imported_at, w.work_order_no
 LIMIT $3;

-- name: save_report_figures
-- Store the figures of a day's report (a new collect replaces the text and the delivery).
INSERT INTO reports (day, timezone, figures, run_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT (day, timezone) DO UPDATE
   SET figures = EXCLUDED.figures, run_id = EXCLUDED.run_id, created_at = now(),
       body = NULL, attachment_csv = NULL, rendered_at = NULL,
       delivered_at = NULL, delivered_to = NULL;

-- name: get_report
-- A day's report.
SELECT day, timezone, figures, body, attachment_csv, run_id, created_at, rendered_at,
       delivered_at, delivered_to
  FROM reports
 WHERE day = $1 AND timezone = $2;

-- name: save_report_text
-- Store the rendered text and CSV attachment of a day's report.
UPDATE reports
   SET body = $3, attachment_csv = $4, rendered_at = now()
 WHERE day = $1 AND timezone = $2;

-- name: mark_report_delivered
-- Record that a day's report was mailed.
UPDATE reports
   SET delivered_at = now(), delivered_to = $3
 WHERE day = $1 AND timezone = $2;
