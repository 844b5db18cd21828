"""CSV import: rows validated, upserted by work-order number, one run started per row."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from orchestrator import Fail
from pipelines.data.sample import generate, write_sample
from pipelines.handlers.csv_import import (
    CsvFileError,
    RowError,
    parse_row,
    read_rows,
    run_payloads,
    start_csv_import,
)
from pipelines.handlers.work_orders import import_row

ROOT = Path(__file__).resolve().parents[3]
ROW = {
    "work_order_no": "wo-0000001",
    "material": "MAT-10042",
    "description": "Hydraulic pump housing",
    "quantity": "12",
    "unit": "",
    "plant": "1000",
    "due_date": "2026-01-20",
    "planner_email": "planner@example.com",
}


def test_parse_row_normalises_and_defaults() -> None:
    order = parse_row(ROW)
    assert order.work_order_no == "WO-0000001"
    assert order.quantity == 12
    assert order.unit == "PC"
    assert order.due_date.isoformat() == "2026-01-20"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"quantity": "0"}, "quantity '0'"),
        ({"quantity": "1.5"}, "quantity '1.5'"),
        ({"due_date": "20.01.2026"}, "due_date '20.01.2026'"),
        ({"work_order_no": "WO 1"}, "work_order_no 'WO 1'"),
        ({"plant": ""}, "missing plant"),
        ({"planner_email": "nobody"}, "planner_email 'nobody'"),
        ({"material": "A\x00B"}, "NUL"),
        ({"material": ["x"]}, "expected text"),
    ],
)
def test_parse_row_names_the_bad_value(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RowError, match=message):
        parse_row({**ROW, **change})


def test_read_rows_refuses_a_file_without_required_columns(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("work_order_no,material\nWO-1,M\n")
    with pytest.raises(CsvFileError, match="missing column"):
        list(read_rows(path))
    with pytest.raises(CsvFileError, match="cannot read"):
        list(read_rows(tmp_path / "absent.csv"))
    path.write_bytes(b"work_order_no,material,quantity,plant,due_date\n\xff\xfe,\n")
    with pytest.raises(CsvFileError, match="not a UTF-8 CSV"):
        list(read_rows(path))


def test_sample_is_deterministic_and_valid(tmp_path: Path) -> None:
    assert generate(30) == generate(30)
    assert generate(30, seed=8) != generate(30)
    path = write_sample(tmp_path / "s.csv", 30)
    payloads = run_payloads(path)
    assert [p["line"] for p in payloads] == list(range(2, 32))
    assert {p["source"] for p in payloads} == {"s.csv"}
    for payload in payloads:
        parse_row(payload["row"])


async def test_import_is_idempotent_on_the_work_order_number(
    app_conn: asyncpg.Connection, make_ctx: Callable[..., Any]
) -> None:
    payload = {"row": ROW, "source": "a.csv", "line": 2}
    first = await import_row(payload, make_ctx("import"))
    again = await import_row(payload, make_ctx("import"))
    changed = await import_row(
        {"row": {**ROW, "quantity": "13"}, "source": "b.csv", "line": 7}, make_ctx("import")
    )
    assert [first["change"], again["change"], changed["change"]] == [
        "inserted",
        "unchanged",
        "updated",
    ]
    rows = await app_conn.fetch(
        "SELECT work_order_no, quantity, source, source_line FROM work_orders"
    )
    assert [tuple(r) for r in rows] == [("WO-0000001", 13, "b.csv", 7)]


async def test_import_of_a_bad_row_fails_permanently_with_its_line(
    app_conn: asyncpg.Connection, make_ctx: Callable[..., Any]
) -> None:
    payload = {"row": {**ROW, "quantity": "-3"}, "source": "orders.csv", "line": 17}
    with pytest.raises(Fail, match=r"orders.csv:17: quantity '-3'"):
        await import_row(payload, make_ctx("import"))
    with pytest.raises(Fail, match="a row must be an object"):
        await import_row({"row": "WO-1;M;3"}, make_ctx("import"))
    assert await app_conn.fetchval("SELECT count(*) FROM work_orders") == 0


def _apply(dsn: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "apply", "--yes", "--dsn", dsn],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


async def test_start_csv_import_starts_one_run_per_row_in_one_transaction(
    dsn: str, app_conn: asyncpg.Connection, tmp_path: Path
) -> None:
    _apply(dsn)
    path = write_sample(tmp_path / "orders.csv", 25)
    run_ids = await start_csv_import(app_conn, path)
    assert len(set(run_ids)) == 25
    queued = await app_conn.fetch(
        "SELECT message, headers FROM pgmq.q_work_orders__import ORDER BY msg_id"
    )
    assert [q["headers"]["run_id"] for q in queued] == run_ids
    assert [q["message"]["line"] for q in queued] == list(range(2, 27))
    assert queued[0]["message"]["row"]["work_order_no"] == "WO-0000001"

    # A caller's rollback takes every run back with it.
    tx = app_conn.transaction()
    await tx.start()
    await start_csv_import(app_conn, path)
    await tx.rollback()
    assert await app_conn.fetchval("SELECT count(*) FROM pgmq.q_work_orders__import") == 25
