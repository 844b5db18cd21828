"""Work-order labels: Code 128 barcodes rendered as SVG with python-barcode.

Code 128 encodes all of ASCII, so a work-order number such as ``WO-2025-000123`` is encoded as
it is; the library switches to code set C for runs of digits, which keeps labels short.
"""

from __future__ import annotations

import logging


class _NoPillowNotice(logging.Filter):
    """python-barcode announces at import that Pillow is missing; labels are SVG and need no
    Pillow, so that one notice is dropped (nothing else from the library is)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Pillow not found")


logging.getLogger("pyBarcode").addFilter(_NoPillowNotice())

from barcode import Code128  # noqa: E402  (after the filter: the notice comes at import)
from barcode.errors import BarcodeError  # noqa: E402
from barcode.writer import SVGWriter  # noqa: E402

SYMBOLOGY = "code128"

# Millimetres: 0.25 mm modules print cleanly on 203 dpi label printers; 10 modules of quiet
# zone on each side is what scanners need.
WRITER_OPTIONS = {
    "module_width": 0.25,
    "module_height": 15.0,
    "quiet_zone": 2.5,
    "font_size": 10,
    "text_distance": 5.0,
    "compress": False,
}


class LabelError(ValueError):
    """The text cannot be encoded as Code 128."""


def code128_svg(code: str) -> str:
    """The SVG document of `code` as a Code 128 barcode, with the code printed beneath it."""
    if not code or not code.isascii() or not code.isprintable():
        raise LabelError(f"Code 128 needs printable ASCII text, got {code!r}")
    try:
        rendered: bytes = Code128(code, writer=SVGWriter()).render(dict(WRITER_OPTIONS))
    except BarcodeError as exc:
        raise LabelError(f"cannot encode {code!r} as Code 128: {exc}") from exc
    return rendered.decode("utf-8")
