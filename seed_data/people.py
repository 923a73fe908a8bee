"""Patients and the people they share with: names, dates of birth, addresses, contact details."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from seed_data.catalog import (
    DEPARTMENTS,
    FAMILY,
    FEMALE_GIVEN,
    GENERAL_HEALTH,
    MALE_GIVEN,
    MENTAL_HEALTH,
    SEXUAL_HEALTH,
    SOCIAL_CARE,
    STREETS,
    TOWNS,
    Department,
    Json,
)
from seed_data.clock import Clock
from seed_data.nhs_number import NHS_NUMBER_SYSTEM
from seed_data.trust import TRUST_ID, Trust

GENERAL_DEPARTMENTS = tuple(d for d in DEPARTMENTS if d.label == GENERAL_HEALTH and d.key != "pathology")
SENSITIVE_DEPARTMENTS = {d.label: d for d in DEPARTMENTS if d.label != GENERAL_HEALTH}
# How often a patient is under the care of a service whose items carry a sensitive label.
SENSITIVE_SHARE = {MENTAL_HEALTH: 0.12, SEXUAL_HEALTH: 0.06, SOCIAL_CARE: 0.08}
BIRTH_ANCHOR = date(2026, 1, 1)


@dataclass(frozen=True, slots=True)
class Subject:
    """What every builder of one patient's record needs to know about them."""

    key: str  # "000042": the suffix of every id in this patient's record
    ref: str  # "Patient/pat-000042"
    age: int
    family: str
    departments: tuple[Department, ...]  # the services they are under; letters come from these
    labels: frozenset[str]  # the privacy labels that occur in their record


def make_subject(rng: random.Random, n: int) -> Subject:
    key = f"{n:06d}"
    departments = list(rng.sample(GENERAL_DEPARTMENTS, rng.randint(1, 2)))
    for label, share in SENSITIVE_SHARE.items():
        if rng.random() < share:
            departments.append(SENSITIVE_DEPARTMENTS[label])
    labels = frozenset(d.label for d in departments) | {GENERAL_HEALTH}
    age = min(int(rng.triangular(0, 98, 55)), 97)
    return Subject(key, f"Patient/pat-{key}", age, rng.choice(FAMILY), tuple(departments), labels)


def patient(rng: random.Random, subject: Subject, nhs_number: str, clock: Clock, trust: Trust) -> Json:
    female = rng.random() < 0.51
    given = rng.choice(FEMALE_GIVEN if female else MALE_GIVEN)
    name: Json = {"use": "official", "family": subject.family, "given": [given]}
    if subject.age >= 18:
        name["prefix"] = [rng.choice(("Mrs", "Ms", "Miss")) if female else "Mr"]
    return {
        "resourceType": "Patient",
        "id": f"pat-{subject.key}",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}],
        "active": True,
        "name": [name],
        "telecom": _telecom(rng, given, subject),
        "gender": "female" if female else "male",
        "birthDate": birth_date(rng, subject, clock),
        "address": [address(rng)],
        "generalPractitioner": [{"reference": rng.choice(trust.gp_practices)}],
        "managingOrganization": {"reference": f"Organization/{TRUST_ID}"},
    }


def birth_date(rng: random.Random, subject: Subject, clock: Clock) -> str:
    """Anchored on a fixed day (not `today`), so the demo patients' birth dates never change."""
    anchor = min(clock.today, BIRTH_ANCHOR)
    return date.fromordinal(anchor.toordinal() - subject.age * 365 - rng.randrange(365)).isoformat()


def address(rng: random.Random) -> Json:
    city, district, area = rng.choice(TOWNS)
    letters = "ABDEFGHJLNPQRSTUWXYZ"
    postcode = f"{area}{rng.randint(1, 29)} {rng.randint(1, 9)}{rng.choice(letters)}{rng.choice(letters)}"
    return {
        "use": "home",
        "line": [f"{rng.randint(1, 180)} {rng.choice(STREETS)}"],
        "city": city,
        "district": district,
        "postalCode": postcode,
        "country": "GB",
    }


def _telecom(rng: random.Random, given: str, subject: Subject) -> list[Json]:
    # 07700 900000-900999 is Ofcom's range for fiction; example.com is reserved for examples.
    mobile = f"07700 900{rng.randrange(1000):03d}"
    email = f"{given}.{subject.family}.{subject.key}@example.com".lower().replace("'", "")
    return [
        {"system": "phone", "value": mobile, "use": "mobile"},
        {"system": "email", "value": email, "use": "home"},
    ]


def person_name(rng: random.Random, family: str | None = None) -> tuple[Json, str]:
    """A name (and its gender) for someone close to the patient."""
    female = rng.random() < 0.6
    given = rng.choice(FEMALE_GIVEN if female else MALE_GIVEN)
    name = {"use": "official", "family": family or rng.choice(FAMILY), "given": [given]}
    return name, "female" if female else "male"
