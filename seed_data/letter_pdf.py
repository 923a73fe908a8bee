"""A one-page PDF (about 600 bytes) that every synthetic letter carries, built once."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cache

TEXT = b"Synthetic hospital letter - test data only"


@dataclass(frozen=True, slots=True)
class Pdf:
    data: str  # base64
    size: int
    sha1: str  # base64 of the SHA-1, as Attachment.hash wants it


@cache
def letter_pdf() -> Pdf:
    raw = _pdf_bytes()
    sha1 = base64.b64encode(hashlib.sha1(raw, usedforsecurity=False).digest()).decode()
    return Pdf(base64.b64encode(raw).decode(), len(raw), sha1)


def _pdf_bytes() -> bytes:
    """A minimal well-formed PDF 1.4: catalog, pages, one page with one line of Helvetica."""
    stream = b"BT /F1 14 Tf 72 770 Td (" + TEXT + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out
