"""Validation of single resources: each check, built from small resources as data."""

from __future__ import annotations

import copy
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.errors import BadRequest, FhirError, Issue, NotSupported, Unprocessable
from fhir_server.validation import supported_types, validate_json_bytes, validate_resource

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "obs1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
    "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
}
PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "name": [{"use": "official", "family": "Smith", "given": ["Ann", "Marie"]}],
    "telecom": [{"system": "phone", "value": "0123"}],
    "birthDate": "1970-01-01",
}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    resource = copy.deepcopy(base)
    resource.update(changes)
    return resource


# Every 422 case runs twice: with the R4B model parse, and with our walk alone (use_model=False),
# which must find each problem by itself.
@pytest.fixture(params=[True, False], ids=["model", "walk-only"], autouse=True)
def use_model(request: pytest.FixtureRequest) -> bool:
    MODE["use_model"] = request.param
    return bool(request.param)


MODE: dict[str, bool] = {"use_model": True}


def issues_of(resource: Any, **kwargs: Any) -> list[Issue]:
    with pytest.raises(Unprocessable) as caught:
        validate_resource(resource, use_model=MODE["use_model"], **kwargs)
    return caught.value.issues


def expressions(resource: Any) -> list[str]:
    return [e for issue in issues_of(resource) for e in issue.expression]


def only_issue(resource: Any) -> Issue:
    (issue,) = issues_of(resource)
    return issue


def accepted(resource: dict[str, Any], **kwargs: Any) -> None:
    validate_resource(resource, use_model=MODE["use_model"], **kwargs)


# -- the valid baseline ------------------------------------------------------------------------
def test_small_valid_resources_pass() -> None:
    """The baselines every negative case below breaks in one place are themselves valid."""
    accepted(OBSERVATION)
    accepted(PATIENT, expected_type="Patient", expected_id="p1", require_id=True)


def test_supported_types_are_r4_types_the_r4b_models_have() -> None:
    types = supported_types()
    assert {"Patient", "Observation", "Bundle", "Questionnaire"} <= types
    assert not {"MedicinalProduct", "Evidence", "SubstanceSpecification", "Citation", "Resource"} & types


# -- required bindings -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("resource", "path", "value_set"),
    [
        (with_(OBSERVATION, status="bogus"), "Observation.status", "observation-status"),
        (with_(PATIENT, gender="female-ish"), "Patient.gender", "administrative-gender"),
        (
            {"resourceType": "Encounter", "status": "walking", "class": {"code": "AMB"}},
            "Encounter.status",
            "encounter-status",
        ),
        (
            {
                "resourceType": "MedicationRequest",
                "status": "done",
                "intent": "order",
                "medicationCodeableConcept": {"text": "aspirin"},
                "subject": {"reference": "Patient/p1"},
            },
            "MedicationRequest.status",
            "medicationrequest-status",
        ),
    ],
)
def test_a_code_outside_its_required_value_set_is_rejected(
    resource: dict[str, Any], path: str, value_set: str
) -> None:
    """Bogus status codes, which the models accept, are refused with the set and its codes."""
    issue = only_issue(resource)
    assert issue.expression == (path,)
    assert issue.code == "code-invalid"
    assert f"http://hl7.org/fhir/ValueSet/{value_set}" in issue.diagnostics
    assert "allowed:" in issue.diagnostics


def test_observation_status_message_lists_the_allowed_codes() -> None:
    issue = only_issue(with_(OBSERVATION, status="bogus"))
    assert issue.diagnostics.startswith(
        "Observation.status: 'bogus' is not in the required value set "
        "http://hl7.org/fhir/ValueSet/observation-status (allowed: "
    )
    assert "final" in issue.diagnostics and "preliminary" in issue.diagnostics


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"name": [{"use": "nickname-ish", "family": "X"}]}, "Patient.name[0].use"),
        ({"telecom": [{"system": "pigeon", "value": "x"}]}, "Patient.telecom[0].system"),
        ({"identifier": [{"use": "primary", "value": "1"}]}, "Patient.identifier[0].use"),
        ({"address": [{"use": "holiday", "city": "Leeds"}]}, "Patient.address[0].use"),
        ({"text": {"status": "made-up", "div": "<div>x</div>"}}, "Patient.text.status"),
        ({"contact": [{"name": {"use": "bad", "family": "Y"}}]}, "Patient.contact[0].name.use"),
    ],
)
def test_bindings_on_data_types_are_checked_wherever_the_type_appears(
    changes: dict[str, Any], path: str
) -> None:
    """HumanName.use, ContactPoint.system, ... are bound in the data type, not in Patient."""
    assert expressions(with_(PATIENT, **changes)) == [path]


def test_quantity_comparator_is_bound_inside_observation_value() -> None:
    resource = with_(OBSERVATION, valueQuantity={"value": 5, "comparator": "about"})
    assert expressions(resource) == ["Observation.valueQuantity.comparator"]


CONDITION: dict[str, Any] = {
    "resourceType": "Condition",
    "subject": {"reference": "Patient/p1"},
    "clinicalStatus": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
    },
}


def test_required_codeable_concept_needs_one_coding_from_the_set() -> None:
    """Condition.clinicalStatus (required): a coding from the set passes, a wrong code does not."""
    accepted(CONDITION)
    wrong = copy.deepcopy(CONDITION)
    wrong["clinicalStatus"]["coding"][0]["code"] = "dormant"
    issue = only_issue(wrong)
    assert issue.expression == ("Condition.clinicalStatus.coding",)
    assert "condition-clinical" in issue.diagnostics


# -- ele-1 and JSON shape ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "path", "words"),
    [
        ({"name": [{"family": "Smith", "given": ["Ann", ""]}]}, "Patient.name[0].given[1]", "empty"),
        ({"name": [{"family": "   "}]}, "Patient.name[0].family", "whitespace"),
        ({"telecom": []}, "Patient.telecom", "empty array"),
        ({"name": [{}]}, "Patient.name[0]", "empty object"),
        ({"maritalStatus": {}}, "Patient.maritalStatus", "empty object"),
        ({"birthDate": None}, "Patient.birthDate", "null"),
        ({"name": [None]}, "Patient.name[0]", "null"),
        ({"name": [{"given": ["Ann", None]}]}, "Patient.name[0].given[1]", "null"),
    ],
)
def test_empty_and_null_content_is_rejected(changes: dict[str, Any], path: str, words: str) -> None:
    """ele-1 and json.html: no empty strings, arrays, objects, nor null; omit the element instead."""
    issue = only_issue(with_(PATIENT, **changes))
    assert issue.expression == (path,)
    assert words in issue.diagnostics


def test_null_in_a_primitive_array_is_allowed_when_its_extension_is_aligned() -> None:
    """json.html#primitive: given [null, "B"] with _given [{...}, null] carries an extension only."""
    name = {
        "given": [None, "Marie"],
        "_given": [{"extension": [{"url": "http://example.org/x", "valueString": "a"}]}, None],
    }
    accepted(with_(PATIENT, name=[name]))


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"active": "yes"}, "Patient.active"),
        ({"active": 1}, "Patient.active"),
        ({"multipleBirthInteger": "2"}, "Patient.multipleBirthInteger"),
        ({"multipleBirthInteger": True}, "Patient.multipleBirthInteger"),
        ({"birthDate": 19700101}, "Patient.birthDate"),
        ({"name": {"family": "Smith"}}, "Patient.name"),
        ({"gender": ["female"]}, "Patient.gender"),
        ({"managingOrganization": "Organization/1"}, "Patient.managingOrganization"),
    ],
)
def test_wrong_json_types_are_rejected(changes: dict[str, Any], path: str) -> None:
    """The models would coerce "yes" to true; FHIR JSON needs real booleans, numbers, arrays."""
    issue = only_issue(with_(PATIENT, **changes))
    assert issue.expression == (path,)
    assert issue.code == "structure"


def test_a_decimal_given_as_a_string_is_rejected() -> None:
    resource = with_(OBSERVATION, valueQuantity={"value": "72.5", "unit": "kg"})
    assert expressions(resource) == ["Observation.valueQuantity.value"]


# -- unknown elements --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"favouriteColour": "blue"}, "Patient.favouriteColour"),
        ({"name": [{"family": "Smith", "nick": "Al"}]}, "Patient.name[0].nick"),
        ({"_birthDate": {"colour": "red"}}, "Patient._birthDate.colour"),
        ({"_name": {"id": "x"}}, "Patient._name"),
        ({"fhir_comments": ["a comment"]}, "Patient.fhir_comments"),
    ],
)
def test_unknown_elements_are_named(changes: dict[str, Any], path: str) -> None:
    issue = only_issue(with_(PATIENT, **changes))
    assert issue.expression == (path,)
    assert repr(path.rsplit(".", 1)[1]) in issue.diagnostics


def test_an_r4_element_that_the_r4b_model_lacks_is_not_supported_with_the_model(use_model: bool) -> None:
    """EvidenceVariable changed in R4B: R4's approvalDate passes our R4 walk but not the R4B parse."""
    resource = {
        "resourceType": "EvidenceVariable",
        "status": "draft",
        "characteristic": [{"definitionCodeableConcept": {"text": "adults"}}],
        "approvalDate": "2020-01-01",
    }
    if not use_model:
        accepted(resource)
        return
    issue = only_issue(resource)
    assert issue.expression == ("EvidenceVariable.approvalDate",)
    assert issue.code == "not-supported"
    assert "not supported by this server" in issue.diagnostics


# -- cardinality, choices, formats (the models check these too) --------------------------------
def test_missing_required_element_is_reported_by_path() -> None:
    resource = with_(OBSERVATION)
    del resource["code"]
    issue = only_issue(resource)
    assert issue.expression == ("Observation.code",)
    assert issue.code == "required"


def test_missing_required_element_inside_a_data_type_is_reported() -> None:
    """Extension.url is required wherever an extension appears."""
    resource = with_(PATIENT, extension=[{"valueString": "x"}])
    assert expressions(resource) == ["Patient.extension[0].url"]


def test_a_required_primitive_may_be_present_by_its_extension_alone() -> None:
    """json.html#primitive: `_status` with a data-absent-reason extension stands for `status`."""
    resource = with_(OBSERVATION)
    del resource["status"]
    absent = {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}
    resource["_status"] = {"extension": [absent]}
    accepted(resource)


def test_two_choices_of_one_element_are_rejected() -> None:
    issue = only_issue(with_(PATIENT, deceasedBoolean=True, deceasedDateTime="2020"))
    assert issue.expression == ("Patient.deceased[x]",)
    assert "deceasedBoolean" in issue.diagnostics and "deceasedDateTime" in issue.diagnostics


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"birthDate": "1970-13-45"}, "Patient.birthDate"),
        ({"birthDate": "01/02/1970"}, "Patient.birthDate"),
        ({"deceasedDateTime": "2020-01-01T10:00"}, "Patient.deceasedDateTime"),
        ({"implicitRules": "http://example.org/has space"}, "Patient.implicitRules"),
        ({"multipleBirthInteger": 2**31}, "Patient.multipleBirthInteger"),
        ({"photo": [{"data": "not base64!"}]}, "Patient.photo[0].data"),
        ({"meta": {"lastUpdated": "2020-01-01"}}, "Patient.meta.lastUpdated"),
    ],
)
def test_malformed_primitives_are_reported_by_path(changes: dict[str, Any], path: str) -> None:
    issue = only_issue(with_(PATIENT, **changes))
    assert issue.expression == (path,)
    assert "Traceback" not in issue.diagnostics


# -- many problems at once ---------------------------------------------------------------------
def test_every_problem_is_reported_with_its_expression() -> None:
    """Not just the first: each problem is its own issue pointing at its element."""
    resource = with_(
        PATIENT,
        active="yes",
        gender="bogus",
        name=[{"use": "bad", "given": ["Ann", ""]}],
        telecom=[],
        extra=1,
    )
    resource["contact"] = [{"name": {"family": "  "}}]
    assert sorted(expressions(resource)) == sorted(
        [
            "Patient.active",
            "Patient.gender",
            "Patient.name[0].use",
            "Patient.name[0].given[1]",
            "Patient.telecom",
            "Patient.extra",
            "Patient.contact[0].name.family",
        ]
    )


# -- nested resources --------------------------------------------------------------------------
def test_contained_resources_are_validated_as_their_own_type() -> None:
    contained = with_(OBSERVATION, status="bogus", id="c1")
    resource = with_(PATIENT, contained=[contained])
    assert expressions(resource) == ["Patient.contained[0].status"]


@pytest.mark.parametrize(
    ("contained", "words"),
    [
        ({"resourceType": "MedicinalProduct", "id": "m"}, "does not support"),
        ({"resourceType": "Foo", "id": "f"}, "unknown resourceType"),
        ({"id": "f"}, "resourceType"),
    ],
)
def test_contained_resources_of_unusable_types_are_reported_not_crashed_on(
    contained: dict[str, Any], words: str
) -> None:
    issues = issues_of(with_(PATIENT, contained=[contained]))
    assert issues[0].expression == ("Patient.contained[0]",)
    assert words in issues[0].diagnostics
    assert all("Traceback" not in issue.diagnostics for issue in issues)


def test_bundle_entries_are_validated() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": OBSERVATION}, {"resource": with_(PATIENT, name=[{"use": "bad"}])}],
    }
    assert expressions(bundle) == ["Bundle.entry[1].resource.name[0].use"]


# -- id syntax ---------------------------------------------------------------------------------
ID_CHARS = string.ascii_letters + string.digits + "-."


@given(st.text(alphabet=ID_CHARS, min_size=1, max_size=64))
def test_any_well_formed_id_is_accepted(resource_id: str) -> None:
    accepted(with_(PATIENT, id=resource_id))


@given(
    st.one_of(
        st.text(alphabet=ID_CHARS, min_size=65, max_size=80),
        st.text(min_size=1, max_size=20).filter(lambda s: s.strip() and set(s) - set(ID_CHARS)),
    )
)
def test_any_malformed_id_is_rejected(resource_id: str) -> None:
    issue = only_issue(with_(PATIENT, id=resource_id))
    assert issue.expression == ("Patient.id",)


def test_contained_id_syntax_is_checked() -> None:
    resource = with_(PATIENT, contained=[with_(OBSERVATION, id="no spaces please")])
    assert expressions(resource) == ["Patient.contained[0].id"]


# -- not a resource, or not this one: 400 ------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "kwargs", "words"),
    [
        ([PATIENT], {}, "JSON object"),
        ({"id": "p1"}, {}, "no resourceType"),
        ({"resourceType": "Pateint"}, {}, "Unknown resourceType"),
        ({"resourceType": "SubscriptionTopic"}, {}, "Unknown resourceType"),  # R4B-only, not R4
        (PATIENT, {"expected_type": "Observation"}, "URL is for Observation"),
        (PATIENT, {"expected_id": "p2"}, "does not match"),
        (with_(PATIENT, id=None), {"expected_id": "p1"}, "must carry an id"),
        ({"resourceType": "Patient"}, {"require_id": True}, "must carry an id"),
    ],
)
def test_bodies_that_are_not_the_expected_resource_are_bad_requests(
    body: Any, kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        validate_resource(body, **kwargs)
    assert caught.value.status == 400
    assert words in str(caught.value)


def test_an_r4_only_type_is_not_supported() -> None:
    with pytest.raises(NotSupported) as caught:
        validate_resource({"resourceType": "MedicinalProduct", "id": "m1"})
    assert str(caught.value) == "MedicinalProduct is an R4 type this server does not support"
    assert caught.value.issues[0].expression == ("resourceType",)


# -- bytes in, resource out --------------------------------------------------------------------
def test_validate_json_bytes_returns_the_parsed_resource() -> None:
    assert validate_json_bytes(b'{"resourceType": "Patient", "id": "p9"}', expected_id="p9") == {
        "resourceType": "Patient",
        "id": "p9",
    }


def test_validate_json_bytes_refuses_malformed_json() -> None:
    with pytest.raises(BadRequest, match="not valid JSON"):
        validate_json_bytes(b'{"resourceType": "Patient",')


def test_every_error_is_a_fhir_error_with_a_status() -> None:
    """Whatever is thrown in, only the typed error family comes out."""
    for body in ({"resourceType": "Patient", "contained": [{"resourceType": "Foo"}]}, {"resourceType": 3}):
        with pytest.raises(FhirError) as caught:
            validate_resource(body)
        assert caught.value.status in (400, 422)
