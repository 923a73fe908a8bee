"""The trust itself: its organisations, clinicians and clinic locations, shared by every patient."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from seed_data.catalog import (
    DEPARTMENTS,
    FAMILY,
    FEMALE_GIVEN,
    GMC_SYSTEM,
    GP_PRACTICES,
    MALE_GIVEN,
    ODS_SYSTEM,
    Department,
    Json,
)

TRUST_ID = "org-trust"
TRUST_ODS = "RX1"
TRUST_NAME = "Northvale Teaching Hospitals NHS Foundation Trust"
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"


@dataclass
class Trust:
    """Every shared resource, and the references a patient's record picks from."""

    resources: list[Json] = field(default_factory=list)
    practitioners: dict[str, list[str]] = field(default_factory=dict)  # department key -> references
    gp_practices: list[str] = field(default_factory=list)


def build_trust(rng: random.Random, patients: int) -> Trust:
    trust = Trust()
    trust.resources.append(_trust_organization())
    per_department = max(2, patients // 400)
    for department in DEPARTMENTS:
        trust.resources.append(_department(department))
        trust.resources.append(_location(department))
        refs = trust.practitioners.setdefault(department.key, [])
        for n in range(1, per_department + 1):
            practitioner = _practitioner(rng, department, n)
            trust.resources.append(practitioner)
            refs.append(f"Practitioner/{practitioner['id']}")
    for ods, name in GP_PRACTICES:
        trust.resources.append(_gp_practice(ods, name))
        trust.gp_practices.append(f"Organization/{gp_practice_id(ods)}")
    return trust


def department_ref(department: Department) -> str:
    return f"Organization/org-{department.key}"


def location_ref(department: Department) -> str:
    return f"Location/loc-{department.key}"


def gp_practice_id(ods: str) -> str:
    return f"org-gp-{ods.lower()}"


def _org_type(code: str, display: str) -> list[Json]:
    return [{"coding": [{"system": ORG_TYPE, "code": code, "display": display}]}]


def _trust_organization() -> Json:
    return {
        "resourceType": "Organization",
        "id": TRUST_ID,
        "identifier": [{"system": ODS_SYSTEM, "value": TRUST_ODS}],
        "active": True,
        "type": _org_type("prov", "Healthcare Provider"),
        "name": TRUST_NAME,
        "telecom": [{"system": "phone", "value": "0113 496 0000", "use": "work"}],
        "address": [{"line": ["Infirmary Road"], "city": "Leeds", "postalCode": "LS1 3EX", "country": "GB"}],
    }


def _department(department: Department) -> Json:
    return {
        "resourceType": "Organization",
        "id": f"org-{department.key}",
        "active": True,
        "type": _org_type("dept", "Hospital Department"),
        "name": department.name,
        "partOf": {"reference": f"Organization/{TRUST_ID}", "display": TRUST_NAME},
    }


def _gp_practice(ods: str, name: str) -> Json:
    return {
        "resourceType": "Organization",
        "id": gp_practice_id(ods),
        "identifier": [{"system": ODS_SYSTEM, "value": ods}],
        "active": True,
        "type": _org_type("prov", "Healthcare Provider"),
        "name": name,
    }


def _location(department: Department) -> Json:
    return {
        "resourceType": "Location",
        "id": f"loc-{department.key}",
        "status": "active",
        "name": f"{department.name} Outpatients",
        "mode": "instance",
        "managingOrganization": {"reference": department_ref(department)},
    }


def _practitioner(rng: random.Random, department: Department, n: int) -> Json:
    female = rng.random() < 0.5
    given = rng.choice(FEMALE_GIVEN if female else MALE_GIVEN)
    family = rng.choice(FAMILY)
    return {
        "resourceType": "Practitioner",
        "id": f"prac-{department.key}-{n:02d}",
        "identifier": [{"system": GMC_SYSTEM, "value": f"{rng.randrange(1_000_000, 10_000_000)}"}],
        "active": True,
        "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Dr"]}],
        "telecom": [{"system": "phone", "value": "0113 496 0000", "use": "work"}],
        "gender": "female" if female else "male",
    }
