"""SMART scope grammar, v1 and v2, granular scopes. https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.access.scopes import LETTERS, InvalidScope, Scope, data_scopes, parse_letters, parse_scope
from fhir_server.search.parse import parse_search

VITALS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


def _ordered_subsets() -> list[str]:
    return ["".join(c) for n in range(1, 6) for c in itertools.combinations("cruds", n)]


@pytest.mark.parametrize("letters", _ordered_subsets())
def test_every_ordered_v2_permission_parses(letters: str) -> None:
    """Each of the 31 non-empty in-order subsets of c r u d s is a valid permission."""
    scope = parse_scope(f"patient/Observation.{letters}")
    assert scope is not None and scope.letters == frozenset(letters)


@given(st.text(alphabet="cruds", min_size=1, max_size=7))
def test_v2_letters_valid_exactly_when_in_order_without_repeats(text: str) -> None:
    """Out-of-order or repeated letters are refused; in order, each once, accepted."""
    order = ["cruds".index(c) for c in text]
    valid = all(a < b for a, b in itertools.pairwise(order))
    if valid:
        assert parse_letters(text) == frozenset(text)
    else:
        with pytest.raises(InvalidScope):
            parse_letters(text)


@pytest.mark.parametrize(("v1", "v2"), [("read", "rs"), ("write", "cud"), ("*", "cruds")])
def test_v1_permissions_mean_their_v2_letters(v1: str, v2: str) -> None:
    scope = parse_scope(f"user/Patient.{v1}")
    assert scope == Scope("user", "Patient", frozenset(v2), (), f"user/Patient.{v1}")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["patient/*.rs", "user/*.cruds", "system/Observation.read", "patient/*.*"])
def test_contexts_and_wildcards(text: str) -> None:
    scope = parse_scope(text)
    assert scope is not None and scope.context == text.split("/")[0]


@pytest.mark.parametrize(
    "text",
    ["openid", "fhirUser", "launch", "launch/patient", "launch/encounter", "offline_access", "online_access"],
)
def test_non_data_scopes_grant_no_data(text: str) -> None:
    assert parse_scope(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "patient/Observation",
        "patient/Observation.",
        "patient/Observation.x",
        "patient/Observation.rr",
        "patient/Observation.sr",
        "patient/Observation.readwrite",
        "admin/Observation.r",
        "patient/Obs-ervation.r",
        "patient/*.rs?category=x",  # granular needs a type
        f"patient/Observation.rs?nonsense={VITALS}",  # not a search parameter of the type
        "patient/Observation.rs?_count=5",  # result parameters do not narrow
        "patient/Observation.rs?",
    ],
)
def test_malformed_data_scopes_are_refused(text: str) -> None:
    with pytest.raises(InvalidScope):
        parse_scope(text)


@pytest.mark.parametrize(
    "query",
    [
        "focus:Patient.family=W",  # a chain: judged on another resource, outside the caller's reach
        "focus.family=W",
        "focus:Patient._has:DocumentReference:subject:description=Dermatology",
        "has-member:Observation.subject:Patient.name=W",
        "_has:Observation:has-member:status=final",  # a reverse chain
        "_list=42",  # the members of a List: another resource again
        f"category={VITALS}&subject:Patient.birthdate=lt2000",  # one bad part spoils the scope
        "_text=W",  # result, text and paging parameters do not narrow by the resource's own data
        "_include=Observation:subject",
        "_sort=date",
        "code:in=http://example.org/vs",  # a value set: another resource again
        "category=",  # an empty value means no criterion at all
        "category=%20",  # a blank one too (it folds to nothing and would match every Observation)
    ],
)
def test_granular_criteria_are_only_simple_parameters_of_the_type(query: str) -> None:
    """A granular scope narrows by the resource's own search values; chains, _has and anything that
    reads other resources are refused, since storage applies the rule without the access filter."""
    with pytest.raises(InvalidScope):
        parse_scope(f"patient/Observation.rs?{query}")


@pytest.mark.parametrize(
    "query",
    [
        "category=vital-signs",
        "code=http://loinc.org|8867-4,http://loinc.org|8480-6",
        "category:not=laboratory",
        "code:text=pulse",
        "focus=Patient/p2",  # the resource's own reference, not the resource it points at
        "focus:Patient=p2",
        "subject:identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018",
        "value-quantity=gt100",
        "date=ge2020",
        "status:missing=false",
        f"_security=http://fhir.patientsknowbest.com/codesystem/privacy-label|GENERAL_HEALTH&category={VITALS}",
        "_tag=x&_id=o1",
    ],
)
def test_simple_granular_criteria_are_accepted(query: str) -> None:
    scope = parse_scope(f"patient/Observation.rs?{query}")
    assert scope is not None and scope.granular


def test_granular_scope_carries_the_search_criteria() -> None:
    """`?category=...|vital-signs` parses exactly as the same search would."""
    scope = parse_scope(f"patient/Observation.rs?category={VITALS}")
    expected = parse_search("Observation", [("category", VITALS)]).query.criteria
    assert scope is not None and scope.granular and scope.criteria == expected


def test_granular_scope_with_several_parameters_needs_all() -> None:
    scope = parse_scope(f"patient/Observation.rs?category={VITALS}&status=final")
    assert scope is not None and len(scope.criteria) == 2


def test_token_scopes_drop_the_malformed_and_the_non_data_ones() -> None:
    """Fail closed: a scope we cannot read grants nothing, and spoils nothing else."""
    scopes = data_scopes(["openid", "patient/Observation.rs", "patient/Foo.zz", "launch/patient"])
    assert [s.text for s in scopes] == ["patient/Observation.rs"]


def test_a_token_scope_with_a_chain_grants_nothing() -> None:
    """Not even the type without its criteria: dropped, never widened to `patient/Observation.rs`."""
    chained = "patient/Observation.rs?focus:Patient.family=W"
    assert data_scopes([chained, "patient/Patient.r"]) == data_scopes(["patient/Patient.r"])


def test_covers_checks_type_and_letter() -> None:
    scope = Scope("patient", "*", frozenset({"r", "s"}))
    assert scope.covers("Condition", "r") and not scope.covers("Condition", "c")
    typed = Scope("patient", "Observation", frozenset({"c"}))
    assert typed.covers("Observation", "c") and not typed.covers("Condition", "c")


@given(
    st.sampled_from(["patient", "user", "system"]),
    st.sampled_from(["Observation", "Patient", "*", "Condition"]),
    st.sets(st.sampled_from(LETTERS), min_size=1),
)
def test_round_trip_of_generated_scopes(context: str, resource_type: str, letters: set[str]) -> None:
    """Any generated in-order scope parses back to its parts."""
    text = f"{context}/{resource_type}.{''.join(c for c in LETTERS if c in letters)}"
    scope = parse_scope(text)
    assert scope == Scope(context, resource_type, frozenset(letters), (), text)  # type: ignore[arg-type]
