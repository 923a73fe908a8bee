"""Whole numbers as they come in URLs and headers (`_count`, `_offset`, version ids, ETags).

Only ASCII digits count: `str.isdigit()` also accepts `²` and other scripts' digits, which
`int()` then refuses or reads as something the client did not write. A number is read saturating
at `CEILING` (10^18, below SQLite's and BSON's 2^63 - 1), so a 5000-digit value costs nothing to
read (Python refuses to convert strings of more than 4300 digits) and never overflows a 64-bit
store column; each caller then bounds it to what it means.
"""

from __future__ import annotations

import re

CEILING = 10**18
_DIGITS = re.compile(r"[0-9]+")


def ascii_whole(text: str) -> int | None:
    """`text` as a whole number if it is ASCII digits only (saturating at CEILING), else None."""
    if not _DIGITS.fullmatch(text):
        return None
    significant = text.lstrip("0")
    return int(significant or "0") if len(significant) <= 18 else CEILING
