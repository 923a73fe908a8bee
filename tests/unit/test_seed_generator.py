"""The synthetic trust generator: deterministic, valid, self-consistent, labelled."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from functools import cache
from typing import Any

import orjson
import pytest

from seed_data.catalog import PRIVACY_LABEL_SYSTEM, PRIVACY_LABELS
from seed_data.generator import generate_trust, nhs_number_of, patient_ids
from seed_data.nhs_number import NHS_NUMBER_SYSTEM, check_digit, is_valid_nhs_number

Json = dict[str, Any]
TODAY = date(2026, 11, 24)
CLINICAL = {"DocumentReference", "Appointment", "Observation", "DiagnosticReport", "MedicationStatement"}


@cache
def trust(patients: int = 25, seed: int = 7) -> tuple[Json, ...]:
    return tuple(generate_trust(patients=patients, seed=seed, today=TODAY))


def ndjson(resources: tuple[Json, ...]) -> bytes:
    return b"\n".join(orjson.dumps(r) for r in resources)


def test_same_seed_gives_identical_bytes() -> None:
    """Generating twice with the same arguments gives byte-identical output."""
    again = tuple(generate_trust(patients=25, seed=7, today=TODAY))
    assert ndjson(again) == ndjson(trust())


def test_different_seed_gives_different_output() -> None:
    assert ndjson(trust(25, 8)) != ndjson(trust(25, 7))


def test_ids_are_unique_and_patients_have_the_documented_ids() -> None:
    keys = [(r["resourceType"], r["id"]) for r in trust()]
    assert len(keys) == len(set(keys))
    assert [i for t, i in keys if t == "Patient"] == patient_ids(25)


def test_record_sizes_per_patient() -> None:
    """Each patient has 10 letters, 6 appointments, 60 Observations, 2 reports, 3 medicines."""
    counts = Counter(r["resourceType"] for r in trust())
    assert counts["Patient"] == 25
    assert counts["DocumentReference"] == 250
    assert counts["Appointment"] == 150
    assert counts["Observation"] == 25 * 60
    assert counts["DiagnosticReport"] == 50
    assert counts["MedicationStatement"] == 75
    assert counts["Consent"] >= counts["RelatedPerson"]


@pytest.mark.parametrize("number", ["9434765919", "9990000018", "4010232137"])
def test_known_valid_nhs_numbers_pass(number: str) -> None:
    assert is_valid_nhs_number(number)


@pytest.mark.parametrize("number", ["9434765918", "943476591", "94347659190", "94347659x9", ""])
def test_invalid_nhs_numbers_fail(number: str) -> None:
    assert not is_valid_nhs_number(number)


def test_a_remainder_of_ten_has_no_valid_check_digit() -> None:
    assert check_digit("999000000") is None  # weights 10..2 sum to 243; 243 mod 11 = 1 -> 11 - 1 = 10


def test_patients_have_unique_valid_test_range_nhs_numbers() -> None:
    numbers = [nhs_number_of(r) for r in trust() if r["resourceType"] == "Patient"]
    assert all(n is not None and n.startswith("999") and is_valid_nhs_number(n) for n in numbers)
    assert len(set(numbers)) == len(numbers)
    patient = next(r for r in trust() if r["resourceType"] == "Patient")
    assert patient["identifier"][0]["system"] == NHS_NUMBER_SYSTEM


def _validator() -> Callable[[Json], None]:
    """The project's validator once it exists; the R4B models (what it builds on) until then."""
    try:
        from fhir_server.validation import validate_resource

        return validate_resource
    except ImportError:
        from fhir.resources.R4B import get_fhir_model_class

        return lambda r: get_fhir_model_class(r["resourceType"]).model_validate(r) and None


def test_every_resource_is_valid_r4() -> None:
    validate = _validator()
    for resource in trust(12, 3):
        validate(resource)  # raises on the first invalid one, naming it


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            else:
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def test_every_reference_resolves_to_a_generated_resource() -> None:
    known = {f"{r['resourceType']}/{r['id']}" for r in trust()}
    dangling = {ref for r in trust() for ref in _references(r) if ref not in known}
    assert dangling == set()


def test_each_clinical_item_has_exactly_one_privacy_label() -> None:
    for resource in trust():
        security = (resource.get("meta") or {}).get("security", [])
        if resource["resourceType"] in CLINICAL:
            assert len(security) == 1, resource["id"]
            assert security[0]["system"] == PRIVACY_LABEL_SYSTEM
            assert security[0]["code"] in PRIVACY_LABELS
        else:
            assert security == [], resource["id"]


def test_sensitive_labels_occur() -> None:
    """A big enough trust uses all four labels, general health most."""
    labels = Counter(r["meta"]["security"][0]["code"] for r in trust(60, 1) if r["resourceType"] in CLINICAL)
    assert set(labels) == set(PRIVACY_LABELS)
    assert labels.most_common(1)[0][0] == "GENERAL_HEALTH"


def test_appointments_are_past_and_upcoming_relative_to_today() -> None:
    starts = [r["start"][:10] for r in trust() if r["resourceType"] == "Appointment"]
    assert any(s < TODAY.isoformat() for s in starts)
    assert any(s > TODAY.isoformat() for s in starts)
    upcoming = [
        r for r in trust() if r["resourceType"] == "Appointment" and r["start"][:10] > TODAY.isoformat()
    ]
    assert {r["status"] for r in upcoming} == {"booked"}


def test_consents_grant_privacy_labels_to_an_actor() -> None:
    consents = [r for r in trust(60, 1) if r["resourceType"] == "Consent"]
    assert consents
    for consent in consents:
        assert consent["scope"]["coding"][0]["code"] == "patient-privacy"
        provision = consent["provision"]
        assert provision["type"] == "permit"
        assert provision["actor"][0]["reference"]["reference"].split("/")[0] in {
            "RelatedPerson",
            "Practitioner",
        }
        assert {a["coding"][0]["code"] for a in provision["action"]} <= {"access", "correct"}
        assert all(label["system"] == PRIVACY_LABEL_SYSTEM for label in provision["securityLabel"])


def test_patient_entered_observations_are_survey_series_by_the_patient() -> None:
    survey = [
        r
        for r in trust()
        if r["resourceType"] == "Observation" and r["category"][0]["coding"][0]["code"] == "survey"
    ]
    assert len(survey) == 25 * 54
    assert all(r["performer"] == [r["subject"]] for r in survey)
    assert all(("valueQuantity" in r) != ("valueInteger" in r) for r in survey)


def test_birth_dates_do_not_depend_on_today() -> None:
    """The demo's documented birth dates stay the same whatever day the data is generated."""
    later = generate_trust(patients=5, seed=7, today=date(2027, 6, 1))
    births = [r["birthDate"] for r in later if r["resourceType"] == "Patient"]
    assert births == [r["birthDate"] for r in trust() if r["resourceType"] == "Patient"][:5]
