"""Pure normalisers shared by write-time index extraction and the search query parser.

Both sides must normalise identically, or a stored value and the query for it would not meet.
https://hl7.org/fhir/R4/search.html (string, date, number and quantity matching rules).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from typing import Any

from fhir_server.indexing.entries import MAX_INSTANT, MIN_INSTANT

__all__ = [
    "MAX_INSTANT",
    "MIN_INSTANT",
    "date_bounds",
    "fold",
    "money_parts",
    "number_bounds",
    "period_bounds",
    "quantity_parts",
    "range_parts",
    "timing_bounds",
    "ucum_canonical",
    "ucum_factor",
]

QuantityParts = tuple[float, float, float, str | None, str | None, str | None]

_SPACE = re.compile(r"\s+")
_US_PER_SECOND = 1_000_000
_US_PER_DAY = 86_400 * _US_PER_SECOND
ISO_4217 = "urn:iso:std:iso:4217"


_PUNCTUATION_TO_SPACE = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})


def words(text: str) -> Iterable[str]:
    """The distinct folded words of a long text (`_text`/`_content` word lists): ASCII punctuation
    separates words. str.translate + split is ~3x faster than a regex."""
    folded = text.lower() if text.isascii() else fold(text)
    return dict.fromkeys(folded.translate(_PUNCTUATION_TO_SPACE).split())


def search_words(value: str) -> list[str]:
    """The words of a `_text`/`_content` search value, split as the stored word lists are: `o'neil`
    and `follow-up` look for `o neil` and `follow up`, the words a resource holding them has."""
    return list(words(value))


def fold(s: str) -> str:
    """Lower case, accents removed, whitespace collapsed: the form string search compares in."""
    # Short strings (names, cities, displays) recur across resources, so are worth caching; long
    # ones (descriptions, narratives) rarely recur and would crowd the cache.
    return _fold_short(s) if len(s) <= 80 else _fold(s)


@lru_cache(maxsize=16384)
def _fold_short(s: str) -> str:
    return _fold(s)


def _fold(s: str) -> str:
    if s.isascii():
        return _SPACE.sub(" ", s).strip().lower()
    bare = _strip_marks(unicodedata.normalize("NFKD", s))
    return _SPACE.sub(" ", bare).strip().casefold()


@cache
def _marks() -> re.Pattern[str]:
    """A character class of the BMP's combining marks (built once, ~10 ms): a regex removes them
    about three times faster than testing unicodedata.combining() character by character."""
    marks = [chr(c) for c in range(0x10000) if unicodedata.combining(chr(c))]
    return re.compile("[" + "".join(re.escape(m) for m in marks) + "]")


def _strip_marks(decomposed: str) -> str:
    if max(decomposed) > "\uffff":  # marks beyond the BMP are rare: take the slow, complete way
        return "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _marks().sub("", decomposed)


# FHIR date / dateTime / instant, at any precision. Seconds are optional after hh:mm because search
# values such as `2026-11-24T10:00Z` are allowed even though stored dateTimes always carry seconds.
_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_in_month(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _tz_offset_us(tz: str | None) -> int:
    """Offset east of UTC in µs; no zone means UTC (our documented choice for local times)."""
    if tz is None or tz == "Z":
        return 0
    hours, minutes = int(tz[1:3]), int(tz[4:6])
    if hours > 14 or minutes > 59:
        raise ValueError(f"bad time zone offset {tz!r}")
    sign = -1 if tz[0] == "-" else 1
    return sign * (hours * 3600 + minutes * 60) * _US_PER_SECOND


def _check_range(value: int, low: int, high: int, what: str, s: str) -> int:
    if not low <= value <= high:
        raise ValueError(f"{what} out of range in {s!r}")
    return value


def _date_part_bounds(y: int, m: str | None, d: str | None, s: str) -> tuple[int, int]:
    """[low, high) days for a date-only value of year, month or day precision."""
    if m is None:
        return _days_from_civil(y, 1, 1), _days_from_civil(y + 1, 1, 1)
    month = _check_range(int(m), 1, 12, "month", s)
    if d is None:
        next_y, next_m = (y + 1, 1) if month == 12 else (y, month + 1)
        return _days_from_civil(y, month, 1), _days_from_civil(next_y, next_m, 1)
    day = _check_range(int(d), 1, _days_in_month(y, month), "day", s)
    low = _days_from_civil(y, month, day)
    return low, low + 1


def _time_bounds(g: Mapping[str, str | None], day: int, s: str) -> tuple[int, int]:
    """[low, high) µs for a value with a time part; width follows the precision written."""
    hour = _check_range(int(g["H"] or 0), 0, 23, "hour", s)
    minute = _check_range(int(g["M"] or 0), 0, 59, "minute", s)
    second = _check_range(int(g["S"] or 0), 0, 60, "second", s)
    frac = g["f"]
    micros = int((frac + "000000")[:6]) if frac else 0
    if g["S"] is None:
        width = 60 * _US_PER_SECOND
    elif frac:
        width = 10 ** max(0, 6 - len(frac))  # beyond µs precision, the µs containing it
    else:
        width = _US_PER_SECOND
    low = day * _US_PER_DAY + ((hour * 60 + minute) * 60 + second) * _US_PER_SECOND + micros
    low -= _tz_offset_us(g["tz"])
    return low, low + width


@lru_cache(maxsize=16384)
def date_bounds(s: str) -> tuple[int, int]:
    """A FHIR date/dateTime/instant of any precision as [low, high) µs since the epoch, UTC.

    `2026` -> [2026-01-01, 2027-01-01); `2026-11-24T10:00Z` -> that minute. Raises ValueError.
    """
    match = _DATE.fullmatch(s)
    if match is None:
        raise ValueError(f"not a FHIR date/dateTime/instant: {s!r}")
    g = match.groupdict()
    year = int(g["y"])
    low_day, high_day = _date_part_bounds(year, g["m"], g["d"], s)
    if g["H"] is None:
        return low_day * _US_PER_DAY, high_day * _US_PER_DAY
    return _time_bounds(g, low_day, s)


@lru_cache(maxsize=8192)
def number_bounds(s: str) -> tuple[float, float, float]:
    """(value, low, high): the half-open range implied by the significant digits written.

    "100" -> (100, 99.5, 100.5); "100.00" -> [99.995, 100.005); "1e2" -> one significant figure,
    so [50, 150). Raises ValueError on anything that is not a decimal number.
    """
    try:
        dec = Decimal(s.strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {s!r}") from None
    if not dec.is_finite():
        raise ValueError(f"not a finite number: {s!r}")
    exponent = dec.as_tuple().exponent
    assert isinstance(exponent, int)  # finite decimals have an int exponent
    half = Decimal(5).scaleb(exponent - 1)
    return float(dec), float(dec - half), float(dec + half)


def _number_text(value: Any) -> str | None:
    """The textual form of a JSON number (bools are not numbers here). Request bodies parse numbers
    with a fraction or exponent as Decimal (jsonio), whose str is the number as written."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    return value if isinstance(value, str) else repr(value)


def json_number_bounds(value: Any) -> tuple[float, float, float] | None:
    """number_bounds for a value as it came out of JSON, or None when it is not a number."""
    text = _number_text(value)
    if text is None:
        return None
    try:
        bounds = number_bounds(text)
    except ValueError:
        return None
    return bounds if all(math.isfinite(b) for b in bounds) else None  # beyond a double: unsearchable


def _safe_bounds(value: Any) -> tuple[int, int] | None:
    if not isinstance(value, str):
        return None
    try:
        return date_bounds(value)
    except ValueError:
        return None


def period_bounds(period: Mapping[str, Any]) -> tuple[int, int] | None:
    """A Period as [low, high); a missing start or end is open (MIN_INSTANT / MAX_INSTANT)."""
    start = _safe_bounds(period.get("start"))
    end = _safe_bounds(period.get("end"))
    if start is None and end is None:
        return None
    low = start[0] if start else MIN_INSTANT
    high = end[1] if end else MAX_INSTANT
    return low, high


def timing_bounds(timing: Mapping[str, Any]) -> tuple[int, int] | None:
    """A Timing's outer limits: its events and its repeat.boundsPeriod; the schedule is ignored."""
    spans = [b for b in map(_safe_bounds, timing.get("event") or ()) if b is not None]
    repeat = timing.get("repeat")
    if isinstance(repeat, Mapping) and isinstance(repeat.get("boundsPeriod"), Mapping):
        bounds = period_bounds(repeat["boundsPeriod"])
        if bounds is not None:
            spans.append(bounds)
    if not spans:
        return None
    return min(b[0] for b in spans), max(b[1] for b in spans)


def quantity_parts(q: Mapping[str, Any]) -> QuantityParts | None:
    """(value, low, high, system, code, unit) of a Quantity/SimpleQuantity/Age/Duration/Count/...

    None when there is no numeric value, since nothing could match it by value.
    """
    bounds = json_number_bounds(q.get("value"))
    if bounds is None:
        return None
    return (*bounds, q.get("system"), q.get("code"), q.get("unit"))


def money_parts(m: Mapping[str, Any]) -> QuantityParts | None:
    """A Money as a quantity whose code is its ISO 4217 currency."""
    bounds = json_number_bounds(m.get("value"))
    if bounds is None:
        return None
    currency = m.get("currency")
    return (*bounds, ISO_4217 if currency else None, currency, currency)


def range_parts(r: Mapping[str, Any]) -> QuantityParts | None:
    """A Range as one quantity spanning [low.value, high.value]; an absent end is open (±inf).

    `value` is the low end when there is one (else the high end), for sorting.
    """
    low = quantity_parts(r["low"]) if isinstance(r.get("low"), Mapping) else None
    high = quantity_parts(r["high"]) if isinstance(r.get("high"), Mapping) else None
    if low is None and high is None:
        return None
    unit_source = low or high
    assert unit_source is not None
    lo = low[0] if low else float("-inf")
    hi = high[0] if high else float("inf")
    return (lo if low else hi, lo, hi, unit_source[3], unit_source[4], unit_source[5])


# ---------------------------------------------------------------------------------------------
# UCUM canonical form (where feasible)

UCUM = "http://unitsofmeasure.org"
_PREFIXES = {
    "Y": 1e24, "Z": 1e21, "E": 1e18, "P": 1e15, "T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3, "h": 1e2,
    "da": 1e1, "d": 1e-1, "c": 1e-2, "m": 1e-3, "u": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15, "a": 1e-18,
}  # fmt: skip
# Metric atoms take prefixes and are their own base; L stays L (not m3), as clinical units use it.
_METRIC = {"g": "g", "L": "L", "l": "L", "m": "m", "s": "s", "mol": "mol", "eq": "eq", "Pa": "Pa",
           "U": "U", "[IU]": "[IU]", "[iU]": "[IU]", "kat": "kat", "Hz": "Hz"}  # fmt: skip
# mm[Hg] is left alone: it is the unit every blood pressure is written and searched in.
# Non-metric atoms: (factor, base). Cel is affine, not a factor, so it is left out.
_NON_METRIC = {
    "min": (60.0, "s"), "h": (3600.0, "s"), "d": (86400.0, "s"), "wk": (604800.0, "s"),
    "mo": (2629800.0, "s"), "a": (31557600.0, "s"), "%": (0.01, ""), "[lb_av]": (453.59237, "g"),
    "[oz_av]": (28.349523125, "g"), "[in_i]": (0.0254, "m"), "[ft_i]": (0.3048, "m"),
    "[foz_us]": (0.0295735295625, "L"),
}  # fmt: skip
_TERM = re.compile(r"(?P<atom>[A-Za-z%]*\[[^\]]+\]|[A-Za-z%]+)(?P<exp>-?\d+)?|(?P<factor>10\*-?\d+|\d+)")
_ANNOTATION = re.compile(r"\{[^}]*\}")


def _atom(text: str) -> tuple[float, str] | None:
    """(factor, base atom) of a UCUM atom with an optional metric prefix."""
    if text in _NON_METRIC:
        return _NON_METRIC[text]
    if text in _METRIC:
        return 1.0, _METRIC[text]
    for size in (2, 1):
        prefix, rest = text[:size], text[size:]
        if prefix in _PREFIXES and rest in _METRIC:
            return _PREFIXES[prefix], _METRIC[rest]
    return None


def _term(text: str) -> tuple[float, dict[str, int]] | None:
    """(factor, {base: exponent}) of one UCUM term; annotations ({score}) count as 1."""
    if text in ("", "1"):
        return 1.0, {}
    match = _TERM.fullmatch(text)
    if match is None:
        return None
    if match["factor"]:
        base, _, exp = match["factor"].partition("*")
        return (10.0 ** int(exp) if exp else float(base)), {}
    atom = _atom(match["atom"])
    if atom is None:
        return None
    exponent = int(match["exp"] or 1)
    return atom[0] ** exponent, ({atom[1]: exponent} if atom[1] else {})


def _format_units(dims: Mapping[str, int]) -> str:
    def term(base: str, exp: int) -> str:
        return base if exp == 1 else f"{base}{exp}"

    up = ".".join(term(b, e) for b, e in sorted(dims.items()) if e > 0)
    down = ".".join(term(b, -e) for b, e in sorted(dims.items()) if e < 0)
    return (up or ("" if down else "1")) + (f"/{down}" if down else "")


@lru_cache(maxsize=1024)
def ucum_factor(code: str) -> tuple[float, str] | None:
    """(factor, canonical code) for a UCUM code built from the common clinical atoms, else None.

    mg/dL -> (0.01, "g/L"); 10*9/L -> (1e9, "/L"); min -> (60, "s"). Only products and quotients of
    prefixed atoms are understood; anything else (Cel, [diop], invalid codes, a bare {score}) gives
    None. The query parser canonicalises a UCUM query value the same way to match across units.
    """
    factor, dims = 1.0, dict[str, int]()
    bare = _ANNOTATION.sub("", code)  # annotations ({score}, {1.73_m2}) mean 1 and may hold dots
    for index, part in enumerate(bare.split("/")):
        if part == "" and index == 0:
            continue  # a leading "/" as in /min
        sign = 1 if index == 0 else -1  # UCUM's "/" divides by the one term that follows it
        for text in part.split("."):
            parsed = _term(text)
            if parsed is None:
                return None
            factor *= parsed[0] ** sign
            for base, exp in parsed[1].items():
                dims[base] = dims.get(base, 0) + sign * exp
    dims = {b: e for b, e in dims.items() if e}
    return (factor, _format_units(dims)) if dims or factor != 1.0 else None


def ucum_canonical(parts: QuantityParts) -> QuantityParts | None:
    """The same quantity in canonical UCUM units (unit None), or None if not UCUM or not understood.

    Already-canonical quantities come back too (5 g -> 5 g), so every convertible quantity has one.
    """
    value, low, high, system, code, _unit = parts
    if system != UCUM or not code:
        return None
    found = ucum_factor(code)
    if found is None:
        return None
    factor, canonical = found
    return _scaled(value, factor), _scaled(low, factor), _scaled(high, factor), UCUM, canonical, None


def _scaled(x: float, factor: float) -> float:
    """x * factor to 15 significant digits, so 4.5 mg is 0.0045 g and not 0.0045000000000000005."""
    return float(f"{x * factor:.15g}")
