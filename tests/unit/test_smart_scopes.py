"""SMART scope grammar (v1 and v2) and the `covers` rule used to grant within registered scopes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smart_auth.scopes import (
    ClinicalScope,
    covers,
    is_known,
    parse_clinical,
    split,
    wants_patient_context,
    within,
)

CONTEXTS = st.sampled_from(["patient", "user", "system"])
TYPES = st.sampled_from(["Patient", "Observation", "Condition", "*"])
LETTERS = st.lists(st.sampled_from("cruds"), min_size=1, unique=True).map(
    lambda chosen: "".join(c for c in "cruds" if c in chosen)
)


def test_v2_scope_parses_into_context_type_and_permissions() -> None:
    assert parse_clinical("patient/Observation.rs") == ClinicalScope(
        "patient", "Observation", frozenset("rs"), None, False
    )


def test_granular_scope_keeps_its_query() -> None:
    parsed = parse_clinical("patient/Observation.rs?category=http://x|vital-signs")
    assert parsed is not None and parsed.query == "category=http://x|vital-signs"


@pytest.mark.parametrize(("v1", "letters"), [("read", "rs"), ("write", "cud"), ("*", "cruds")])
def test_v1_scopes_map_to_v2_letters(v1: str, letters: str) -> None:
    parsed = parse_clinical(f"user/*.{v1}")
    assert parsed is not None and parsed.v1 and parsed.permissions == frozenset(letters)


@pytest.mark.parametrize(
    "scope",
    [
        "patient/Observation.sr",
        "patient/Observation.",
        "doctor/*.rs",
        "patient/observation.rs",
        "patient/*.read?category=x",
        "patient/*.rx",
        "openid2",
    ],
)
def test_malformed_scopes_are_not_understood(scope: str) -> None:
    assert not is_known(scope)


@given(CONTEXTS, TYPES, LETTERS)
def test_every_well_formed_v2_scope_parses_and_covers_itself(
    context: str, resource: str, letters: str
) -> None:
    scope = f"{context}/{resource}.{letters}"
    parsed = parse_clinical(scope)
    assert parsed is not None and parsed.permissions == frozenset(letters)
    assert covers(scope, scope)


@given(CONTEXTS, TYPES, LETTERS, LETTERS)
def test_covers_means_same_context_and_a_subset_of_permissions(
    context: str, resource: str, have: str, want: str
) -> None:
    assert covers(f"{context}/*.{have}", f"{context}/{resource}.{want}") == (set(want) <= set(have))


@given(TYPES, LETTERS)
def test_a_scope_never_covers_another_context(resource: str, letters: str) -> None:
    assert not covers(f"patient/*.{letters}", f"user/{resource}.{letters}")
    assert not covers("user/*.cruds", f"system/{resource}.{letters}")


def test_granular_allowed_scope_covers_only_the_same_query() -> None:
    allowed = "patient/Observation.rs?category=vital-signs"
    assert covers(allowed, "patient/Observation.r?category=vital-signs")
    assert not covers(allowed, "patient/Observation.rs")
    assert covers("patient/Observation.rs", allowed)  # an unqualified scope covers a narrower one


@pytest.mark.parametrize(
    "query",
    [
        "focus:Patient.family=W",
        "focus.family=W",
        "focus:Patient._has:DocumentReference:subject:description=Dermatology",
        "_has:Observation:has-member:status=final",
        "_list=42",
        "category=vital-signs&subject:Patient.birthdate=lt2000",
        "_include=Observation:subject",
        "_count=1",
        "_text=W",
        "code:in=http://example.org/vs",
        "category=",
        "category",
    ],
)
def test_granular_scopes_use_only_simple_parameters(query: str) -> None:
    """Chains, _has, _list, result parameters and value sets are not granted, even under a wildcard:
    the resource server judges scope criteria outside the caller's reach."""
    scope = f"patient/Observation.rs?{query}"
    assert not is_known(scope)
    assert not covers("patient/*.cruds", scope)
    assert within(["launch/patient", scope], ("patient/*.cruds", "launch/patient")) == ["launch/patient"]


@pytest.mark.parametrize(
    "query",
    [
        "category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
        "category=vital-signs&status=final",
        "code:text=pulse",
        "category:not=laboratory",
        "focus:Patient=p2",
        "_security=http://fhir.patientsknowbest.com/codesystem/privacy-label|GENERAL_HEALTH",
        "_tag=x&_id=1",
    ],
)
def test_simple_granular_scopes_are_granted_under_a_wildcard(query: str) -> None:
    assert covers("patient/*.cruds", f"patient/Observation.rs?{query}")


def test_within_keeps_request_order_and_drops_what_is_not_covered() -> None:
    requested = split("openid patient/Observation.read launch/patient system/*.rs patient/Observation.read")
    assert within(requested, ("patient/*.rs", "openid", "launch/patient")) == [
        "openid",
        "patient/Observation.read",
        "launch/patient",
    ]


def test_patient_context_is_wanted_for_launch_patient_or_patient_scopes() -> None:
    assert wants_patient_context(["launch/patient"])
    assert wants_patient_context(["patient/Observation.rs"])
    assert not wants_patient_context(["user/*.rs", "openid"])
