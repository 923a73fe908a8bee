"""Normalisers shared by index extraction and query parsing (fhir_server/indexing/normalize.py)."""

from __future__ import annotations

import itertools
import math
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.indexing.normalize import (
    MAX_INSTANT,
    MIN_INSTANT,
    date_bounds,
    fold,
    money_parts,
    number_bounds,
    period_bounds,
    quantity_parts,
    range_parts,
    timing_bounds,
    ucum_canonical,
    ucum_factor,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(dt: datetime) -> int:
    """µs since the epoch of an aware datetime, computed independently of the code under test."""
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def utc(*args: int) -> int:
    return us(datetime(*args, tzinfo=UTC))  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# fold


def test_fold_lowercases_strips_accents_and_collapses_whitespace() -> None:
    assert fold("  José \t MÜLLER\n") == "jose muller"
    assert fold("Ærøskøbing") == "ærøskøbing"  # letters without a decomposition stay as they are
    assert fold("\uff26\uff55\uff4c\uff4c") == "full"  # fullwidth letters: NFKD compatibility forms


@given(st.text())
def test_fold_is_idempotent(s: str) -> None:
    assert fold(fold(s)) == fold(s)


@given(st.text())
def test_fold_leaves_no_accents_capitals_or_runs_of_space(s: str) -> None:
    folded = fold(s)
    assert not any(unicodedata.combining(ch) for ch in folded)
    assert folded == folded.strip()
    assert "  " not in folded
    assert folded == folded.lower() or not folded.isascii()


# ---------------------------------------------------------------------------------------------
# date_bounds


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("2026", utc(2026, 1, 1), utc(2027, 1, 1)),
        ("2026-12", utc(2026, 12, 1), utc(2027, 1, 1)),
        ("2024-02", utc(2024, 2, 1), utc(2024, 3, 1)),
        ("2024-02-29", utc(2024, 2, 29), utc(2024, 3, 1)),
        ("2026-11-24T10:00Z", utc(2026, 11, 24, 10, 0), utc(2026, 11, 24, 10, 1)),
        ("2026-11-24T10:00:05Z", utc(2026, 11, 24, 10, 0, 5), utc(2026, 11, 24, 10, 0, 6)),
        ("2026-11-24T10:00:00+01:00", utc(2026, 11, 24, 9), utc(2026, 11, 24, 9, 0, 1)),
        ("2026-11-24T10:00:00-05:30", utc(2026, 11, 24, 15, 30), utc(2026, 11, 24, 15, 30, 1)),
        ("2026-11-24T10:00:00", utc(2026, 11, 24, 10), utc(2026, 11, 24, 10, 0, 1)),  # no zone: UTC
        (
            "2026-11-24T10:00:00.5Z",
            utc(2026, 11, 24, 10, 0, 0, 500_000),
            utc(2026, 11, 24, 10, 0, 0, 600_000),
        ),
        (
            "2026-11-24T10:00:00.123456789Z",
            utc(2026, 11, 24, 10, 0, 0, 123_456),
            utc(2026, 11, 24, 10, 0, 0, 123_457),
        ),
        ("1900-03-01", utc(1900, 3, 1), utc(1900, 3, 2)),
        ("0001", utc(1, 1, 1), utc(2, 1, 1)),
    ],
)
def test_date_bounds_span_the_precision_written(value: str, low: int, high: int) -> None:
    assert date_bounds(value) == (low, high)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "26",
        "2026-1",
        "2026-13",
        "2026-00",
        "2026-02-29",
        "2026-04-31",
        "2026-11-24T24:00Z",
        "2026-11-24T10:60Z",
        "2026-11-24T10Z",
        "2026-11-24 10:00Z",
        "2026-11-24T10:00+15:00",
        "today",
    ],
)
def test_date_bounds_rejects_bad_syntax(value: str) -> None:
    with pytest.raises(ValueError):
        date_bounds(value)


aware_datetimes = st.datetimes(
    min_value=datetime(1000, 1, 2),
    max_value=datetime(9998, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)


def _offset(dt: datetime) -> str:
    text = dt.strftime("%z")
    return "Z" if text == "+0000" else f"{text[:3]}:{text[3:]}"


@given(aware_datetimes)
def test_an_instant_lies_in_the_bounds_of_every_precision_of_it(dt: datetime) -> None:
    """Y ⊇ Y-M ⊇ Y-M-D (in the instant's own zone's calendar, as written) ⊇ minute ⊇ second ⊇ µs."""
    instant = us(dt)
    full = f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond:06d}{_offset(dt)}"
    texts = [f"{dt:%Y-%m-%dT%H:%M}{_offset(dt)}", f"{dt:%Y-%m-%dT%H:%M:%S}{_offset(dt)}", full]
    spans = [date_bounds(t) for t in texts]
    assert date_bounds(full) == (instant, instant + 1)
    for (outer_low, outer_high), (inner_low, inner_high) in itertools.pairwise(spans):
        assert outer_low <= inner_low < inner_high <= outer_high
    for text in (f"{dt:%Y}", f"{dt:%Y-%m}", f"{dt:%Y-%m-%d}"):
        low, high = date_bounds(text)  # a date without a zone is taken as UTC
        local = dt.replace(tzinfo=UTC)
        assert low <= us(local) < high


@given(st.dates(min_value=datetime(1, 1, 1).date(), max_value=datetime(9998, 12, 31).date()))
def test_a_day_is_86400_seconds_from_utc_midnight(day: object) -> None:
    low, high = date_bounds(str(day))
    assert low == us(datetime.combine(day, datetime.min.time(), UTC))  # type: ignore[arg-type]
    assert high - low == 86_400_000_000


# ---------------------------------------------------------------------------------------------
# number_bounds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100", (100.0, 99.5, 100.5)),
        ("100.00", (100.0, 99.995, 100.005)),
        ("1e2", (100.0, 50.0, 150.0)),  # one significant figure
        ("1.00e2", (100.0, 99.5, 100.5)),
        ("-3.5", (-3.5, -3.55, -3.45)),
        ("0", (0.0, -0.5, 0.5)),
        (" 7 ", (7.0, 6.5, 7.5)),
    ],
)
def test_number_bounds_follow_significant_digits(value: str, expected: tuple[float, float, float]) -> None:
    assert number_bounds(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["", "abc", "NaN", "Infinity", "1,5", "--1"])
def test_number_bounds_rejects_what_is_not_a_decimal(value: str) -> None:
    with pytest.raises(ValueError):
        number_bounds(value)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**9), max_value=10**9))
def test_number_bounds_contain_the_value_with_one_unit_of_the_last_digit(d: Decimal) -> None:
    value, low, high = number_bounds(str(d))
    assert low <= value < high
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    width = float(Decimal(1).scaleb(exponent))
    # Each end is the nearest float to the exact decimal, so the width is exact to within two ulps.
    assert high - low == pytest.approx(width, abs=2 * math.ulp(max(abs(low), abs(high))))


# ---------------------------------------------------------------------------------------------
# Period, Timing, Quantity, Money, Range


def test_period_with_open_ends_uses_min_and_max_instant() -> None:
    assert period_bounds({"start": "2026-01"}) == (utc(2026, 1, 1), MAX_INSTANT)
    assert period_bounds({"end": "2026-01"}) == (MIN_INSTANT, utc(2026, 2, 1))
    assert period_bounds({"start": "2026-01-01", "end": "2026-01-01"}) == (utc(2026, 1, 1), utc(2026, 1, 2))
    assert period_bounds({}) is None


def test_timing_spans_its_events_and_bounds_period() -> None:
    timing = {"event": ["2026-03-01", "2026-01-15"], "repeat": {"boundsPeriod": {"end": "2026-06-30"}}}
    assert timing_bounds(timing) == (MIN_INSTANT, utc(2026, 7, 1))
    assert timing_bounds({"event": ["2026-03-01", "2026-01-15"]}) == (utc(2026, 1, 15), utc(2026, 3, 2))
    assert timing_bounds({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}) is None


def test_quantity_money_and_range_parts() -> None:
    q = {"value": 7.25, "system": "http://unitsofmeasure.org", "code": "mg", "unit": "milligram"}
    parts = quantity_parts(q)
    assert parts is not None
    assert parts[:3] == pytest.approx((7.25, 7.245, 7.255))
    assert parts[3:] == ("http://unitsofmeasure.org", "mg", "milligram")
    assert quantity_parts({"unit": "mg"}) is None
    assert money_parts({"value": 10, "currency": "GBP"}) == (
        10.0,
        9.5,
        10.5,
        "urn:iso:std:iso:4217",
        "GBP",
        "GBP",
    )
    assert range_parts({"low": {"value": 1, "code": "a"}, "high": {"value": 5, "code": "a"}}) == (
        1.0,
        1.0,
        5.0,
        None,
        "a",
        None,
    )
    assert range_parts({"high": {"value": 5}})[:3] == (5.0, float("-inf"), 5.0)  # type: ignore[index]
    assert range_parts({}) is None


# ---------------------------------------------------------------------------------------------
# UCUM


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("mg", (1e-3, "g")),
        ("mg/dL", (1e-2, "g/L")),
        ("ug/mL", (1e-3, "g/L")),
        ("mmol/L", (1e-3, "mol/L")),
        ("10*9/L", (1e9, "/L")),
        ("/min", (1 / 60, "/s")),
        ("h", (3600.0, "s")),
        ("kg/m2", (1e3, "g/m2")),
        ("mL/min/{1.73_m2}", (1e-3 / 60, "L/s")),  # an annotation is 1, even with a dot inside
        ("[lb_av]", (453.59237, "g")),
        ("%", (0.01, "1")),
    ],
)
def test_ucum_factor_of_common_clinical_units(code: str, expected: tuple[float, str]) -> None:
    factor, canonical = ucum_factor(code) or (None, None)
    assert canonical == expected[1]
    assert factor == pytest.approx(expected[0])


@pytest.mark.parametrize("code", ["Cel", "[diop]", "mcg", "{score}", "mm[Hg]", "cal/mL", "not a unit"])
def test_ucum_factor_declines_what_it_cannot_convert_by_a_factor(code: str) -> None:
    assert ucum_factor(code) is None


def test_ucum_canonical_scales_value_and_precision_range() -> None:
    ucum = "http://unitsofmeasure.org"
    assert ucum_canonical((4.5, 4.45, 4.55, ucum, "mg", "mg")) == (0.0045, 0.00445, 0.00455, ucum, "g", None)
    assert ucum_canonical((4.5, 4.45, 4.55, ucum, "g", "g")) == (4.5, 4.45, 4.55, ucum, "g", None)
    assert ucum_canonical((4.5, 4.45, 4.55, "http://example.org", "mg", "mg")) is None


@given(st.floats(min_value=1e-6, max_value=1e6), st.sampled_from(["mg", "kg", "ug"]))
def test_canonical_masses_agree_whatever_prefix_they_were_written_in(grams: float, code: str) -> None:
    factor, canonical = ucum_factor(code) or (0.0, "")
    assert canonical == "g"
    written = grams / factor
    parts = ucum_canonical((written, written, written, "http://unitsofmeasure.org", code, None))
    assert parts is not None
    assert parts[0] == pytest.approx(grams, rel=1e-12)
