"""Work orders from CSV files: the row format, its validation, and starting one run per row.

The CSV has a header line with these columns (order free, extra columns ignored)::

    work_order_no,material,description,quantity,unit,plant,due_date,planner_email

`work_order_no`, `material`, `quantity`, `plant` and `due_date` (YYYY-MM-DD) are required.

One run per work order: `start_csv_import` reads the file and starts one run of the
`work_orders` pipeline per row, all inside the caller's transaction (`orchestrator.start_many`
with `conn=`), so a file is either entirely enqueued or not at all. Per-order runs let each
order retry and fail on its own: one order SAP rejects goes to the dead-letter queue while the
rest of the file carries on. Rows are validated by the pipeline's `import` step (`parse_row`),
so a bad row becomes a dead letter that names its file and line; a file without the required
columns is refused here, before anything is enqueued.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg

import orchestrator

PIPELINE = "work_orders"
COLUMNS = (
    "work_order_no",
    "material",
    "description",
    "quantity",
    "unit",
    "plant",
    "due_date",
    "planner_email",
)
REQUIRED = ("work_order_no", "material", "quantity", "plant", "due_date")
WORK_ORDER_NO = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,31}$")
MAX_QUANTITY = 1_000_000
CHUNK = 500


class CsvFileError(ValueError):
    """The file cannot be imported at all (unreadable, not CSV, required columns missing)."""


class RowError(ValueError):
    """One row holds a value the work-order table cannot take."""


@dataclass(frozen=True)
class WorkOrder:
    work_order_no: str
    material: str
    description: str
    quantity: int
    unit: str
    plant: str
    due_date: date
    planner_email: str | None

    def document(self) -> dict[str, Any]:
        """JSON form, as sent to SAP."""
        return {
            "work_order_no": self.work_order_no,
            "material": self.material,
            "description": self.description,
            "quantity": self.quantity,
            "unit": self.unit,
            "plant": self.plant,
            "due_date": self.due_date.isoformat(),
        }


def _field(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None:
        return ""
    if not isinstance(value, str | int):
        raise RowError(f"{name}: expected text, got {type(value).__name__}")
    text = str(value).strip()
    if "\x00" in text or len(text) > 200:
        raise RowError(f"{name}: NUL characters or more than 200 characters")
    return text


def parse_row(row: object) -> WorkOrder:
    """A validated WorkOrder from one CSV row (a mapping of column to text)."""
    if not isinstance(row, Mapping):
        raise RowError(f"a row must be an object of column: value, got {type(row).__name__}")
    values = {name: _field(row, name) for name in COLUMNS}
    missing = [name for name in REQUIRED if not values[name]]
    if missing:
        raise RowError(f"missing {', '.join(missing)}")
    number = values["work_order_no"].upper()
    if not WORK_ORDER_NO.match(number):
        raise RowError(
            f"work_order_no {values['work_order_no']!r}: 3-32 letters, digits and '-' expected"
        )
    quantity = values["quantity"]
    if not quantity.isdigit() or not 0 < int(quantity) <= MAX_QUANTITY:
        raise RowError(f"quantity {quantity!r}: a whole number from 1 to {MAX_QUANTITY} expected")
    try:
        due = date.fromisoformat(values["due_date"])
    except ValueError:
        raise RowError(f"due_date {values['due_date']!r}: YYYY-MM-DD expected") from None
    email = values["planner_email"] or None
    if email is not None and ("@" not in email or any(c.isspace() for c in email)):
        raise RowError(f"planner_email {email!r} is not an e-mail address")
    return WorkOrder(
        work_order_no=number,
        material=values["material"],
        description=values["description"],
        quantity=int(quantity),
        unit=values["unit"] or "PC",
        plant=values["plant"],
        due_date=due,
        planner_email=email,
    )


def read_rows(path: str | Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of every data row; CsvFileError when the file cannot be imported."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise CsvFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        try:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [name for name in REQUIRED if name not in header]
            if missing:
                raise CsvFileError(f"{path}: missing column(s) {', '.join(missing)}")
            for row in reader:
                yield reader.line_num, {k: v for k, v in row.items() if k in COLUMNS}
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CsvFileError(f"{path}: not a UTF-8 CSV file: {exc}") from None


def run_payloads(path: str | Path) -> list[dict[str, Any]]:
    """The entry payload of each row's run: {"row": {...}, "source": name, "line": n}."""
    source = Path(path).name
    return [{"row": row, "source": source, "line": line} for line, row in read_rows(path)]


async def start_csv_import(conn: asyncpg.Connection, path: str | Path) -> list[str]:
    """Start one `work_orders` run per row of the CSV file; returns the run ids.

    Runs in one transaction on `conn` (joining the caller's, if one is open): all rows are
    enqueued, or none.
    """
    payloads = run_payloads(path)
    run_ids: list[str] = []
    async with conn.transaction():
        for first in range(0, len(payloads), CHUNK):
            chunk = payloads[first : first + CHUNK]
            started = await orchestrator.start_many(PIPELINE, chunk, conn=conn)
            run_ids.extend(str(run_id) for run_id in started)
    return run_ids
