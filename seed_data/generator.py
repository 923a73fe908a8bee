"""A synthetic NHS trust as FHIR R4 resources, deterministic from a seed.

`generate_trust(patients=N, seed=S, today=D)` yields the trust's organisations, clinicians and
clinic locations, then each patient followed by their record: sharing (RelatedPerson + Consent),
10 letters, 6 appointments, 54 patient-entered Observations, 2 lab reports (3 results each) and 3
medication statements: about 83 resources per patient. The same arguments give the same resources,
byte for byte; only `random.Random(seed)` is used, never the global generator.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date

from seed_data.catalog import Json
from seed_data.clock import Clock
from seed_data.nhs_number import NHS_NUMBER_SYSTEM, random_test_nhs_number
from seed_data.people import make_subject, patient
from seed_data.record import clinical_record
from seed_data.sharing import sharing
from seed_data.trust import Trust, build_trust

__all__ = ["NHS_NUMBER_SYSTEM", "generate_trust", "nhs_number_of", "patient_ids"]


def generate_trust(*, patients: int, seed: int = 1, today: date | None = None) -> Iterator[Json]:
    """Yield every resource of a trust with `patients` patients (ids are stable for a given seed)."""
    if patients < 0:
        raise ValueError("patients must be >= 0")
    rng = random.Random(seed)
    clock = Clock(today or date.today())
    trust = build_trust(rng, patients)
    yield from trust.resources
    used: set[str] = set()
    for n in range(1, patients + 1):
        yield from _patient_and_record(rng, n, clock, trust, used)


def _patient_and_record(
    rng: random.Random, n: int, clock: Clock, trust: Trust, used: set[str]
) -> Iterator[Json]:
    subject = make_subject(rng, n)
    nhs_number = random_test_nhs_number(rng)
    while nhs_number in used:
        nhs_number = random_test_nhs_number(rng)
    used.add(nhs_number)
    yield patient(rng, subject, nhs_number, clock, trust)
    yield from sharing(rng, subject, clock, trust)
    yield from clinical_record(rng, subject, clock, trust)


def patient_ids(patients: int) -> list[str]:
    """The Patient ids of a generated trust (they depend only on the count)."""
    return [f"pat-{n:06d}" for n in range(1, patients + 1)]


def nhs_number_of(resource: Json) -> str | None:
    """The NHS number of a Patient resource, if it has one."""
    for identifier in resource.get("identifier") or []:
        if identifier.get("system") == NHS_NUMBER_SYSTEM:
            return str(identifier.get("value"))
    return None
