"""Instants stored as integer microseconds come back as the same UTC datetime, to the microsecond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from fhir_server.instants import from_micros, to_micros

_MOMENTS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999))


@given(_MOMENTS)
def test_every_instant_of_years_1_to_9999_survives_the_round_trip(naive: datetime) -> None:
    moment = naive.replace(tzinfo=UTC)
    back = from_micros(to_micros(moment))
    assert back == moment and back.tzinfo is UTC and back.microsecond == moment.microsecond


def test_known_values_on_both_sides_of_the_epoch() -> None:
    assert from_micros(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert from_micros(-1) == datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert from_micros(1_764_467_000_123_456) == datetime(2025, 11, 30, 1, 43, 20, 123456, tzinfo=UTC)
    assert to_micros(datetime(2026, 11, 24, tzinfo=UTC) + timedelta(microseconds=7)) == 1_795_478_400_000_007
