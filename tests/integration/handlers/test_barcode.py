"""Labels: the SVG is a well-formed Code 128 barcode that scans back to the work-order number."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from orchestrator import Fail
from pipelines.handlers.barcodes import LabelError, code128_svg
from pipelines.handlers.work_orders import generate_barcode, import_row

SVG = "{http://www.w3.org/2000/svg}"

# Code 128 symbol values 0..105 as bar/space widths in modules (ISO/IEC 15417, table 1).
_TABLE = (
    "212222 222122 222221 121223 121322 131222 122213 122312 132212 221213 221312 231212 "
    "112232 122132 122231 113222 123122 123221 223211 221132 221231 213212 223112 312131 "
    "311222 321122 321221 312212 322112 322211 212123 212321 232121 111323 131123 131321 "
    "112313 132113 132311 211313 231113 231311 112133 112331 132131 113123 113321 133121 "
    "313121 211331 231131 213113 213311 213131 311123 311321 331121 312113 312311 332111 "
    "314111 221411 431111 111224 111422 121124 121421 141122 141221 112214 112412 122114 "
    "122411 142112 142211 241211 221114 413111 241112 134111 111242 121142 121241 114212 "
    "124112 124211 411212 421112 421211 212141 214121 412121 111143 111341 131141 114113 "
    "114311 411113 411311 113141 114131 311141 411131 211412 211214 211232"
)
WIDTHS = _TABLE.split()
VALUE_OF = {w: v for v, w in enumerate(WIDTHS)}
STOP = "2331112"
START = {103: "A", 104: "B", 105: "C"}


def bars(svg: str) -> tuple[list[tuple[float, float]], float]:
    """(x, width) in mm of the black bars, sorted, and the quiet zone before the first bar."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    found = []
    for rect in root.iter(f"{SVG}rect"):
        if "fill:black" in (rect.get("style") or ""):
            x, width = rect.get("x", ""), rect.get("width", "")
            assert x.endswith("mm") and width.endswith("mm")
            found.append((float(x[:-2]), float(width[:-2])))
    found.sort()
    return found, found[0][0]


def module_widths(found: list[tuple[float, float]]) -> tuple[str, float]:
    """The alternating bar/space widths in modules, and the module size in mm."""
    module = min(width for _, width in found)
    widths = []
    end = None
    for x, width in found:
        if end is not None:
            widths.append(round((x - end) / module))
        widths.append(round(width / module))
        end = x + width
    assert all(1 <= w <= 4 for w in widths), widths
    return "".join(map(str, widths)), module


def decode(widths: str) -> str:
    """Text of a Code 128 symbol given its bar/space widths; asserts start, checksum, stop."""
    assert widths.endswith(STOP), "no stop pattern"
    body = widths[: -len(STOP)]
    assert len(body) % 6 == 0
    values = [VALUE_OF[body[i : i + 6]] for i in range(0, len(body), 6)]
    start, *data, check = values
    assert start in START, f"no start code: {start}"
    assert (start + sum(i * v for i, v in enumerate(data, 1))) % 103 == check, "bad checksum"
    code_set, text = START[start], []
    for v in data:
        if code_set == "C" and v < 100:
            text.append(f"{v:02d}")
        elif code_set != "C" and v < 96:
            base = v + 32
            text.append(chr(base if code_set == "B" or v < 64 else v - 64))
        elif v == 99:
            code_set = "C"
        elif v == 100:
            assert code_set != "B", "FNC4 is not expected in work-order numbers"
            code_set = "B"
        elif v == 101:
            assert code_set != "A", "FNC4 is not expected in work-order numbers"
            code_set = "A"
        else:
            raise AssertionError(f"unexpected symbol value {v} in code set {code_set}")
    return "".join(text)


@pytest.mark.parametrize("code", ["WO-0000001", "WO-2025-000123", "ABC", "9876543210", "A-1-B"])
def test_label_is_an_svg_that_decodes_to_the_code(code: str) -> None:
    svg = code128_svg(code)
    found, quiet_zone = bars(svg)
    widths, module = module_widths(found)
    assert decode(widths) == code
    assert quiet_zone >= 10 * module  # scanners need ten modules of white before the start
    texts = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert code in texts  # printed beneath the bars for people


@pytest.mark.parametrize("bad", ["", "WO-ä", "line\nbreak"])
def test_label_refuses_what_code_128_cannot_carry(bad: str) -> None:
    with pytest.raises(LabelError):
        code128_svg(bad)


async def test_barcode_step_stores_the_svg_and_labels_the_order(
    app_conn: asyncpg.Connection, make_ctx: Callable[..., Any]
) -> None:
    row = {
        "work_order_no": "WO-0000042",
        "material": "MAT-1",
        "quantity": "3",
        "plant": "1000",
        "due_date": "2026-02-01",
    }
    ctx = make_ctx("import")
    imported = await import_row({"row": row, "source": "t.csv", "line": 2}, ctx)
    out = await generate_barcode(imported, make_ctx("barcode", ctx.run_id))
    assert out == {"work_order_no": "WO-0000042", "change": "inserted", "barcode": "code128"}
    stored = await app_conn.fetchrow("SELECT symbology, code, svg FROM barcodes")
    assert (stored["symbology"], stored["code"]) == ("code128", "WO-0000042")
    assert decode(module_widths(bars(stored["svg"])[0])[0]) == "WO-0000042"
    status = await app_conn.fetchval("SELECT status FROM work_orders")
    assert status == "labelled"


async def test_barcode_step_fails_for_an_unknown_work_order(make_ctx: Callable[..., Any]) -> None:
    with pytest.raises(Fail, match="WO-404 is not in the work_orders table"):
        await generate_barcode({"work_order_no": "WO-404"}, make_ctx("barcode"))
