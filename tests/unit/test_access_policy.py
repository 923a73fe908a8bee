"""Policy decisions as plain values: scopes x role x Consent grants -> AccessFilter, and Consent parsing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.access.consent import grant_of, in_period, linked_related_persons
from fhir_server.access.evaluate import ResourceView, allows
from fhir_server.access.policy import (
    DENY,
    PRIVACY_LABEL_SYSTEM,
    Caller,
    Grant,
    chooses_ids,
    filter_for,
    merge,
    missing_scope,
    shares_record,
    source_owned,
    types_only,
)
from fhir_server.access.scopes import data_scopes
from fhir_server.indexing.entries import ReferenceEntry, TokenEntry
from fhir_server.search.query import AccessFilter

PKB = PRIVACY_LABEL_SYSTEM
NOW = datetime(2026, 6, 1, tzinfo=UTC)
VITALS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


def caller(role: str, scopes: str, **kw: Any) -> Caller:
    return Caller(role=role, scopes=data_scopes(scopes.split()), **kw)  # type: ignore[arg-type]


# -- interaction level ---------------------------------------------------------------------------------


def test_missing_scope_names_what_is_needed() -> None:
    who = caller("patient", "patient/Observation.rs", own_patient="Patient/1", launch_patient="Patient/1")
    assert missing_scope(who, "read", "Observation") is None
    assert missing_scope(who, "search", "Observation") is None
    message = missing_scope(who, "create", "Observation")
    assert message is not None and "Observation.c" in message
    assert missing_scope(who, "read", "Condition") is not None


def test_system_clients_use_system_scopes_only_and_people_never_do() -> None:
    assert missing_scope(caller("system", "user/*.cruds"), "read", "Patient") is not None
    assert missing_scope(caller("system", "system/*.rs"), "read", "Patient") is None
    assert missing_scope(caller("clinician", "system/*.cruds"), "read", "Patient") is not None


def test_portal_users_never_write_demographics() -> None:
    assert source_owned(caller("patient", ""), "u", "Patient")
    assert source_owned(caller("carer", ""), "c", "Patient")
    assert not source_owned(caller("patient", ""), "r", "Patient")
    assert not source_owned(caller("clinician", ""), "u", "Patient")


def test_only_patients_and_backend_systems_write_sharing_consents() -> None:
    for role in ("carer", "clinician", "admin"):
        assert all(shares_record(caller(role, ""), letter, "Consent") for letter in "cud")
        assert not shares_record(caller(role, ""), "r", "Consent")
    assert not shares_record(caller("patient", ""), "c", "Consent")
    assert not shares_record(caller("system", ""), "u", "Consent")
    assert not shares_record(caller("carer", ""), "c", "Observation")


def test_portal_users_never_choose_ids_with_put() -> None:
    assert not chooses_ids(caller("patient", "patient/*.cruds"))
    assert not chooses_ids(caller("carer", "user/*.cruds"))
    assert chooses_ids(caller("clinician", "user/*.cruds"))
    assert chooses_ids(caller("system", "system/*.cruds"))


# -- filters --------------------------------------------------------------------------------------------


def test_patient_filter_is_their_own_compartment() -> None:
    who = caller("patient", "patient/*.rs", own_patient="Patient/1", launch_patient="Patient/1")
    assert filter_for(who, "s") == AccessFilter(compartments=frozenset({"Patient/1"}))


def test_patient_launched_for_someone_else_reaches_nothing() -> None:
    """A patient/ scope narrows to the launch patient; a patient user's reach to themselves: disjoint."""
    who = caller("patient", "patient/*.rs", own_patient="Patient/1", launch_patient="Patient/2")
    assert filter_for(who, "r") == DENY


def test_patient_scope_without_launch_patient_reaches_nothing() -> None:
    assert (
        filter_for(caller("carer", "patient/*.rs", grants=(Grant("Patient/1", frozenset(), False),)), "r")
        == DENY
    )


def test_carer_without_grants_reaches_nothing() -> None:
    assert filter_for(caller("carer", "user/*.cruds"), "s") == DENY


def test_carer_grant_gives_compartment_and_labels() -> None:
    grant = Grant("Patient/1", frozenset({"GENERAL_HEALTH"}), can_add=False)
    found = filter_for(caller("carer", "user/*.rs", grants=(grant,)), "s")
    labelled, demographics = found.any_of
    assert labelled.compartments == frozenset({"Patient/1"})
    assert labelled.allowed_labels == frozenset({(PKB, "GENERAL_HEALTH")}) and not labelled.allow_unlabeled
    assert demographics.types == frozenset({"Patient"}) and demographics.compartments == frozenset(
        {"Patient/1"}
    )
    general = (TokenEntry("_security", PKB, "GENERAL_HEALTH"),)
    assert allows(found, ResourceView("Observation", "o", general, frozenset({"Patient/1"})))
    assert not allows(found, ResourceView("Observation", "o", (), frozenset({"Patient/1"})))
    assert allows(found, ResourceView("Patient", "1", (), frozenset({"Patient/1"})))
    assert not allows(found, ResourceView("Patient", "2", (), frozenset({"Patient/2"})))


def test_grant_of_every_label_lets_unlabeled_items_through() -> None:
    every = frozenset({"GENERAL_HEALTH", "MENTAL_HEALTH", "SEXUAL_HEALTH", "SOCIAL_CARE"})
    found = filter_for(caller("carer", "user/*.rs", grants=(Grant("Patient/1", every, False),)), "r")
    assert found.allow_unlabeled


def test_view_only_grants_give_no_write() -> None:
    grant = Grant("Patient/1", frozenset({"GENERAL_HEALTH"}), can_add=False)
    who = caller("carer", "user/*.cruds", grants=(grant,))
    assert filter_for(who, "c") == DENY and filter_for(who, "u") == DENY


def test_carers_never_delete_even_with_view_and_add() -> None:
    grant = Grant("Patient/1", frozenset({"GENERAL_HEALTH"}), can_add=True)
    who = caller("carer", "user/*.cruds", grants=(grant,))
    assert filter_for(who, "c") != DENY and filter_for(who, "d") == DENY


def test_several_grants_become_a_union() -> None:
    grants = (
        Grant("Patient/1", frozenset({"GENERAL_HEALTH"}), False),
        Grant("Patient/2", frozenset(), False),
    )
    found = filter_for(caller("carer", "user/*.rs", grants=grants), "s")
    assert {m.compartments for m in found.any_of} == {frozenset({"Patient/1"}), frozenset({"Patient/2"})}


def test_clinician_reaches_their_organisations_patients() -> None:
    found = filter_for(caller("clinician", "user/*.rs", organization="Organization/t"), "s")
    assert len(found.patient_criteria) == 1 and found.compartments is None


def test_granular_scope_becomes_a_type_rule() -> None:
    who = caller(
        "patient",
        f"patient/Observation.rs?category={VITALS}",
        own_patient="Patient/1",
        launch_patient="Patient/1",
    )
    found = filter_for(who, "s")
    assert found.types == frozenset({"Observation"})
    assert [rule.resource_type for rule in found.extra] == ["Observation"]


def test_plain_scope_beside_a_granular_one_widens_it() -> None:
    """patient/Observation.rs?category=vital-signs + patient/Observation.rs: every Observation."""
    who = caller(
        "patient",
        f"patient/Observation.rs?category={VITALS} patient/Observation.rs",
        own_patient="Patient/1",
        launch_patient="Patient/1",
    )
    found = filter_for(who, "s")
    lab = ResourceView("Observation", "x", (), frozenset({"Patient/1"}))
    assert allows(found, lab)


def test_system_scope_filter_is_types_only() -> None:
    found = filter_for(caller("system", "system/Observation.rs system/Patient.r"), "r")
    assert types_only(found) and found.types == frozenset({"Observation", "Patient"})
    who = caller("patient", "patient/*.rs", own_patient="Patient/1", launch_patient="Patient/1")
    assert not types_only(filter_for(who, "r"))


# -- merge: a property -----------------------------------------------------------------------------------

_PATIENTS = ["Patient/1", "Patient/2"]
_LABELS = ["GENERAL_HEALTH", "MENTAL_HEALTH"]


@st.composite
def flat_filters(draw: st.DrawFn) -> AccessFilter:
    types = draw(st.none() | st.frozensets(st.sampled_from(["Observation", "Patient"])))
    comps = draw(st.none() | st.frozensets(st.sampled_from(_PATIENTS)))
    labels = draw(st.none() | st.frozensets(st.sampled_from(_LABELS)))
    return AccessFilter(
        types=types,
        compartments=comps,
        allowed_labels=None if labels is None else frozenset((PKB, c) for c in labels),
        label_system=PKB,
        allow_unlabeled=draw(st.booleans()),
    )


@st.composite
def views(draw: st.DrawFn) -> ResourceView:
    kind = draw(st.sampled_from(["Observation", "Patient"]))
    patient = draw(st.sampled_from(["1", "2", "3"]))
    labels = draw(st.frozensets(st.sampled_from(_LABELS)))
    entries: list[Any] = [TokenEntry("_security", PKB, c) for c in sorted(labels)]
    if kind == "Observation":
        entries.append(ReferenceEntry("subject", "Patient", patient))
    comps = frozenset({f"Patient/{patient}"})
    return ResourceView(kind, patient if kind == "Patient" else "o", tuple(entries), comps)


@given(flat_filters(), flat_filters(), views())
def test_merge_passes_exactly_what_both_pass(a: AccessFilter, b: AccessFilter, view: ResourceView) -> None:
    merged = merge(a, b)
    both = allows(a, view) and allows(b, view)
    assert (merged is not None and allows(merged, view)) == both


# -- Consent ----------------------------------------------------------------------------------------------


def _consent(**provision: Any) -> dict[str, Any]:
    base = {
        "type": "permit",
        "actor": [{"reference": {"reference": "RelatedPerson/r"}}],
        "action": [{"coding": [{"code": "access"}]}],
        "securityLabel": [
            {"system": PKB, "code": "GENERAL_HEALTH"},
            {"system": "other", "code": "MENTAL_HEALTH"},
        ],
    }
    return {
        "resourceType": "Consent",
        "id": "c",
        "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "patient": {"reference": "Patient/1"},
        "provision": {**base, **provision},
    }


def test_an_active_permit_is_a_grant_of_its_labels() -> None:
    assert grant_of(_consent(), {"RelatedPerson/r"}, NOW) == Grant(
        "Patient/1", frozenset({"GENERAL_HEALTH"}), False, "c"
    )


def test_correct_action_allows_adding() -> None:
    grant = grant_of(_consent(action=[{"coding": [{"code": "correct"}]}]), {"RelatedPerson/r"}, NOW)
    assert grant is not None and grant.can_add


def test_consents_that_grant_nothing() -> None:
    actors = {"RelatedPerson/r"}
    assert grant_of({**_consent(), "status": "inactive"}, actors, NOW) is None
    assert grant_of(_consent(type="deny"), actors, NOW) is None
    assert grant_of(_consent(), {"RelatedPerson/other"}, NOW) is None
    assert grant_of(_consent(period={"end": "2026-05-31"}), actors, NOW) is None
    assert grant_of(_consent(period={"start": "2026-06-02"}), actors, NOW) is None
    assert grant_of(_consent(provision=[{"type": "deny"}]), actors, NOW) is None  # exceptions: not guessed
    assert grant_of({**_consent(), "scope": {"coding": [{"code": "research"}]}}, actors, NOW) is None


def test_period_bounds() -> None:
    assert in_period(None, NOW)
    assert in_period({"start": "2026-06-01", "end": "2026-06-01"}, NOW)  # a whole day covers its instants
    assert not in_period({"end": "2026-05"}, NOW)
    assert not in_period({"start": "garbage"}, NOW)


def test_person_links_name_their_related_persons() -> None:
    person = {"link": [{"target": {"reference": "RelatedPerson/a"}}, {"target": {"reference": "Patient/b"}}]}
    assert linked_related_persons(person) == ("RelatedPerson/a",)


def test_audit_trail_is_append_only_for_every_caller() -> None:
    from fhir_server.access.policy import append_only

    assert append_only(caller("system", ""), "u", "AuditEvent") and append_only(
        caller("system", ""), "d", "AuditEvent"
    )
    assert append_only(caller("clinician", ""), "c", "AuditEvent")
    assert not append_only(caller("system", ""), "c", "AuditEvent")
    assert not append_only(caller("patient", ""), "r", "AuditEvent")


def test_audit_events_name_user_app_request_and_one_patient_each() -> None:
    """One event per patient, each naming only that patient: an event is in the compartment of every
    patient it names, so a shared one would show each patient the others."""
    from fhir_server.access.audit import audit_events
    from fhir_server.access.context import AccessContext
    from fhir_server.validation import validate_resource

    access = AccessContext(caller("carer", ""), client_id="app", user="RelatedPerson/r")
    events = audit_events(access, "GET", "/fhir/Observation?code=x", 200, ["Patient/2", "Patient/1"], NOW)
    for event in events:
        validate_resource(event, expected_type="AuditEvent")
    assert [[e["what"]["reference"] for e in event["entity"]] for event in events] == [
        ["Patient/1"],
        ["Patient/2"],
    ]
    assert all(e["agent"][1]["who"]["identifier"]["value"] == "app" and e["action"] == "R" for e in events)


@pytest.mark.parametrize(
    ("target", "described"),
    [
        ("/fhir/Observation/o1", "GET /fhir/Observation/o1"),
        ("/fhir/Patient?name=Smith&birthdate=lt2000&name=Jo", "GET /fhir/Patient?name&birthdate"),
        ("/fhir/Patient?identifier=https%3A%2F%2Ffhir.nhs.uk%7C9990000018", "GET /fhir/Patient?identifier"),
        ("/fhir/Observation?subject:Patient.name=Smith", "GET /fhir/Observation?subject:Patient.name"),
        ("/fhir/Patient?Smith%20Jones", "GET /fhir/Patient?[other]"),
        ("/fhir/Patient?Smith&gender=male", "GET /fhir/Patient?[other]&gender"),  # a name, sent bare
        ("/fhir/Patient?jones=1&_count=2", "GET /fhir/Patient?[other]&_count"),  # no parameter's code
        ("/fhir/Patient/1/$everything?_count=5", "GET /fhir/Patient/1/$everything?_count"),
        ("/fhir/Patient/2/Observation", "GET /fhir/Patient/[another patient]/Observation"),
        ("/fhir/Patient/2", "GET /fhir/Patient/[another patient]"),
    ],
)
def test_audit_events_carry_parameter_names_never_values(target: str, described: str) -> None:
    """Search values are other people's names and identifiers as often as not; an id in the path
    names another patient only as "another patient"."""
    from fhir_server.access.audit import audit_events
    from fhir_server.access.context import AccessContext

    access = AccessContext(caller("clinician", ""), client_id="app", user="Practitioner/d")
    [event] = audit_events(access, "GET", target, 200, ["Patient/1"], NOW)
    assert event["entity"] == [{"what": {"reference": "Patient/1"}, "description": described}]


def test_professional_grant_adds_to_the_clinicians_organisation() -> None:
    """A Consent to a Practitioner reaches a patient outside their organisation, within its labels."""
    grant = Grant("Patient/9", frozenset({"MENTAL_HEALTH"}), False)
    found = filter_for(caller("clinician", "user/*.rs", organization="Organization/t", grants=(grant,)), "s")
    assert len(found.any_of) == 3  # the grant's labelled part, the Patient's demographics, the organisation
    other = ResourceView(
        "Observation", "o", (TokenEntry("_security", PKB, "MENTAL_HEALTH"),), frozenset({"Patient/9"})
    )
    assert allows(found, other)
    assert not allows(found, ResourceView("Observation", "o", (), frozenset({"Patient/9"})))
