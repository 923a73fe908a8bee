"""Instants and dates relative to the generator's `today`, as FHIR strings, fast and UTC-only."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

DAY = 86_400


class Clock:
    """Formats points in time given as (days from today, minutes after midnight UTC)."""

    def __init__(self, today: date) -> None:
        self.today = today
        self._midnight = int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp())

    def instant(self, days: int, minutes: int = 0) -> str:
        """A FHIR instant (seconds precision, UTC), e.g. '2026-11-24T09:30:00Z'."""
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._midnight + days * DAY + minutes * 60))

    def day(self, days: int) -> str:
        """A FHIR date, e.g. '2026-11-24'."""
        return date.fromordinal(self.today.toordinal() + days).isoformat()
