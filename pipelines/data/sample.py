"""A deterministic sample of work orders as CSV, for the demo and for trying the pipeline.

The same `count` and `seed` always give the same file, so a demo run can be repeated and the
orders the SAP stand-in refuses are the same every time.

    python -m pipelines.data.sample --count 1000 --output work_orders.csv
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import TextIO

from pipelines.handlers.csv_import import COLUMNS

START = date(2026, 1, 5)
MATERIALS = (
    ("MAT-10042", "Hydraulic pump housing"),
    ("MAT-10077", "Gear shaft 40 mm"),
    ("MAT-10115", "Bearing cover, machined"),
    ("MAT-20001", "Control cabinet, wired"),
    ("MAT-20019", "Cable harness X4"),
    ("MAT-30300", "Welded frame, painted"),
    ("MAT-30321", "Conveyor roller 600 mm"),
    ("MAT-40007", "Valve block assembly"),
    ("MAT-40055", "Sensor bracket"),
    ("MAT-50210", "Spare parts kit, service"),
)
PLANTS = {
    "1000": "planner.hamburg@example.com",
    "1100": "planner.munich@example.com",
    "2000": "planner.lyon@example.com",
    "3000": None,  # no planner of its own: mails go to ORCHESTRATOR_SMTP_TO
}
UNITS = ("PC", "PC", "PC", "SET", "M")


def generate(count: int, seed: int = 7, start: date = START) -> list[dict[str, str]]:
    """`count` work-order rows (column -> text), the same for the same arguments."""
    rng = random.Random(seed)
    rows = []
    for n in range(1, count + 1):
        material, description = rng.choice(MATERIALS)
        plant = rng.choice(sorted(PLANTS))
        rows.append(
            {
                "work_order_no": f"WO-{n:07d}",
                "material": material,
                "description": description,
                "quantity": str(rng.randint(1, 500)),
                "unit": rng.choice(UNITS),
                "plant": plant,
                "due_date": (start + timedelta(days=rng.randint(3, 60))).isoformat(),
                "planner_email": PLANTS[plant] or "",
            }
        )
    return rows


def write_csv(rows: list[dict[str, str]], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def write_sample(path: str | Path, count: int, seed: int = 7) -> Path:
    """Write the sample to `path` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        write_csv(generate(count, seed), out)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a deterministic sample of work orders.")
    parser.add_argument("--count", type=int, default=1000, help="rows (default 1000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--output", "-o", help="CSV file (default: standard output)")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("--count must be 0 or more")
    if args.output:
        write_sample(args.output, args.count, args.seed)
    else:
        write_csv(generate(args.count, args.seed), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
