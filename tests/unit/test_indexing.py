"""The search-parameter registry, the FHIRPath compiler and write-time index extraction."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.indexing.entries import (
    MAX_INSTANT,
    CompositeEntry,
    DateEntry,
    IndexEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from fhir_server.indexing.extract import extract_entries, patient_compartments, split_reference
from fhir_server.indexing.fhirpath import CompileError, compile_expression
from fhir_server.indexing.normalize import date_bounds
from fhir_server.indexing.registry import get_registry

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def entries_for(resource: dict[str, Any], param: str) -> list[IndexEntry]:
    return [e for e in extract_entries(resource) if e.param == param]


def canonical_for(resource: dict[str, Any], param: str) -> list[IndexEntry]:
    return [e for e in extract_entries(resource, canonical_quantities=True) if e.param == param]


# ---------------------------------------------------------------------------------------------
# Registry


def test_params_for_includes_the_common_parameters() -> None:
    params = get_registry().params_for("Patient")
    for code in ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_text", "_content"):
        assert code in params
    assert params["name"].type == "string"
    assert params["birthdate"].expression == "Patient.birthDate | Person.birthDate | RelatedPerson.birthDate"


def test_bundle_is_not_a_domain_resource_so_has_no_text_search() -> None:
    params = get_registry().params_for("Bundle")
    assert "_id" in params and "composition" in params
    assert "_text" not in params


def test_get_answers_none_for_unknown_parameters_and_types() -> None:
    registry = get_registry()
    assert registry.get("Patient", "no-such-param") is None
    assert registry.get("NoSuchType", "name") is None
    assert "Patient" in registry.resource_types()
    assert "NoSuchType" not in registry.resource_types()
    assert "DomainResource" not in registry.resource_types()  # abstract
    assert len(registry.resource_types()) == 146  # R4's concrete resource types


def test_composite_components_resolve_to_their_definitions() -> None:
    registry = get_registry()
    sp = registry.get("Observation", "code-value-quantity")
    assert sp is not None
    assert sp.components == (("code", "code"), ("value-quantity", "value.as(Quantity)"))
    assert [c.type for c in registry.components("Observation", sp)] == ["token", "quantity"]


def test_swapped_document_reference_relationship_components_are_put_right() -> None:
    """R4 pairs `code` with the reference definition and `target` with the token one."""
    registry = get_registry()
    sp = registry.get("DocumentReference", "relationship")
    assert sp is not None
    assert [(c.code, c.type) for c in registry.components("DocumentReference", sp)] == [
        ("relation", "token"),
        ("relatesto", "reference"),
    ]


def test_unsupported_parameters_are_listed_with_a_reason_and_not_offered() -> None:
    registry = get_registry()
    reasons = {(u.code, u.base): u.reason for u in registry.unsupported}
    assert "spatial" in reasons[("near", ("Location",))]
    assert reasons[("_filter", ("Resource",))] == "no FHIRPath expression"
    assert registry.get("Location", "near") is None
    assert registry.get("Resource", "_filter") is None


# ---------------------------------------------------------------------------------------------
# FHIRPath compiler


def test_choice_types_compile_to_the_typed_json_key() -> None:
    compiled = compile_expression("Observation.value.as(Quantity)", "Observation")
    resource = {"resourceType": "Observation", "valueQuantity": {"value": 1}, "valueString": "x"}
    assert compiled.run([(resource, "Observation")], (resource, "Observation")) == [
        ({"value": 1}, "Quantity")
    ]
    assert compiled.first_keys == frozenset({"valueQuantity"})


def test_branches_about_other_types_are_dropped() -> None:
    compiled = compile_expression("Patient.birthDate | Person.birthDate", "Person")
    resource = {"resourceType": "Person", "birthDate": "1970"}
    assert compiled.run([(resource, "Person")], (resource, "Person")) == [("1970", "date")]


@pytest.mark.parametrize(
    "expression",
    [
        "Patient.name.select(given)",
        "Patient.noSuchElement",
        "Patient.name.given.first()",
        "Patient.link.other.resolve().name",
    ],
)
def test_unsupported_forms_and_unknown_elements_are_compile_errors(expression: str) -> None:
    with pytest.raises(CompileError):
        compile_expression(expression, "Patient")


# ---------------------------------------------------------------------------------------------
# Patient

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {
        "lastUpdated": "2026-11-24T10:00:00.123Z",
        "tag": [{"system": "http://example.org/tags", "code": "demo"}],
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
        "profile": ["http://example.org/StructureDefinition/p|2.0"],
        "source": "http://example.org/source#1",
    },
    "identifier": [
        {
            "system": "https://fhir.nhs.uk/Id/nhs-number",
            "value": "9000000009",
            "type": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NH"}],
                "text": "NHS Number",
            },
        }
    ],
    "name": [{"family": "Müller", "given": ["José", "Ana María"], "prefix": ["Dr"]}],
    "telecom": [{"system": "phone", "value": "0113 496 0000"}, {"system": "email", "value": "j@example.org"}],
    "gender": "male",
    "birthDate": "1970-03",
    "address": [{"line": ["1 High Street"], "city": "Leeds", "postalCode": "LS1 1AA", "use": "home"}],
    "link": [{"other": {"reference": "Patient/p0"}, "type": "replaces"}],
}


def test_human_name_parts_are_folded_strings_keeping_the_original() -> None:
    assert set(entries_for(PATIENT, "family")) == {StringEntry("family", "muller", "Müller")}
    assert set(entries_for(PATIENT, "name")) == {
        StringEntry("name", "muller", "Müller"),
        StringEntry("name", "jose", "José"),
        StringEntry("name", "ana maria", "Ana María"),
        StringEntry("name", "dr", "Dr"),
    }


def test_address_parts_are_strings_but_not_its_use() -> None:
    values = {e.value for e in entries_for(PATIENT, "address") if isinstance(e, StringEntry)}
    assert values == {"1 high street", "leeds", "ls1 1aa"}
    assert entries_for(PATIENT, "address-city") == [StringEntry("address-city", "leeds", "Leeds")]


def test_a_required_code_carries_its_implicit_system() -> None:
    assert entries_for(PATIENT, "gender") == [
        TokenEntry("gender", "http://hl7.org/fhir/administrative-gender", "male")
    ]


def test_identifier_is_a_token_with_type_text_and_an_of_type_entry() -> None:
    nhs = "https://fhir.nhs.uk/Id/nhs-number"
    assert entries_for(PATIENT, "identifier") == [TokenEntry("identifier", nhs, "9000000009", "nhs number")]
    assert entries_for(PATIENT, "identifier:of-type") == [
        TokenEntry("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203", "NH|9000000009")
    ]


def test_contact_points_are_tokens_of_their_value_and_phone_email_filter_by_system() -> None:
    assert {e.code for e in entries_for(PATIENT, "telecom") if isinstance(e, TokenEntry)} == {
        "0113 496 0000",
        "j@example.org",
    }
    assert entries_for(PATIENT, "phone") == [TokenEntry("phone", None, "0113 496 0000")]
    assert entries_for(PATIENT, "email") == [TokenEntry("email", None, "j@example.org")]


def test_a_partial_birth_date_spans_its_month() -> None:
    assert entries_for(PATIENT, "birthdate") == [DateEntry("birthdate", *date_bounds("1970-03"))]


def test_deceased_is_false_when_absent_and_true_for_a_date_of_death() -> None:
    assert entries_for(PATIENT, "deceased") == [TokenEntry("deceased", None, "false")]
    dead = {**PATIENT, "deceasedDateTime": "2020-01-01"}
    assert entries_for(dead, "deceased") == [TokenEntry("deceased", None, "true")]
    assert entries_for({**PATIENT, "deceasedBoolean": False}, "deceased") == [
        TokenEntry("deceased", None, "false")
    ]


def test_meta_gives_the_common_parameters() -> None:
    assert entries_for(PATIENT, "_id") == [TokenEntry("_id", None, "p1")]
    assert entries_for(PATIENT, "_lastUpdated") == [
        DateEntry("_lastUpdated", *date_bounds("2026-11-24T10:00:00.123Z"))
    ]
    assert entries_for(PATIENT, "_tag") == [TokenEntry("_tag", "http://example.org/tags", "demo")]
    assert [e.code for e in entries_for(PATIENT, "_security") if isinstance(e, TokenEntry)] == ["R"]
    assert entries_for(PATIENT, "_profile") == [
        UriEntry("_profile", "http://example.org/StructureDefinition/p|2.0")
    ]
    assert entries_for(PATIENT, "_source") == [UriEntry("_source", "http://example.org/source#1")]


def test_extension_parameters_index_the_extension_value() -> None:
    url = "http://hl7.org/fhir/StructureDefinition/patient-extensions-Patient-mothersMaidenName"
    patient = {
        **PATIENT,
        "extension": [{"url": url, "valueString": "Smith"}, {"url": "other", "valueString": "X"}],
    }
    assert entries_for(patient, "mothersMaidenName") == [StringEntry("mothersMaidenName", "smith", "Smith")]


def test_narrative_and_content_are_folded_word_lists() -> None:
    patient = {
        **PATIENT,
        "text": {"status": "generated", "div": "<div><p>Café &amp; <b>Müller</b></p></div>"},
    }
    (text,) = entries_for(patient, "_text")
    assert isinstance(text, StringEntry) and text.value == "cafe muller"
    (content,) = entries_for(patient, "_content")
    assert isinstance(content, StringEntry)
    # `_content` is the entire resource's text (search.html), the narrative's words included,
    # never its markup
    assert {"cafe", "muller", "jose", "leeds", "male"} <= set(content.value.split())
    assert not {"div", "amp"} & set(content.value.split())


def test_a_patient_is_in_its_own_compartment_and_those_it_links_to() -> None:
    assert patient_compartments(PATIENT) == ("Patient/p1", "Patient/p0")


# ---------------------------------------------------------------------------------------------
# Observation

BP: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "bp",
    "status": "final",
    "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure"}], "text": "BP"},
    "subject": {"reference": "Patient/p1"},
    "performer": [{"reference": "Practitioner/d1"}, {"reference": "Patient/p2"}],
    "effectivePeriod": {"start": "2026-11-24T09:00:00Z"},
    "component": [
        {
            "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
            "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]", "unit": "mmHg"},
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
            "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]", "unit": "mmHg"},
        },
    ],
}


def test_codeable_concept_gives_a_token_per_coding_and_one_for_its_text() -> None:
    assert entries_for(BP, "code") == [
        TokenEntry("code", LOINC, "85354-9", "blood pressure"),
        TokenEntry("code", None, None, "bp"),
    ]


def test_an_open_period_ends_at_max_instant() -> None:
    assert entries_for(BP, "date") == [DateEntry("date", date_bounds("2026-11-24T09:00:00Z")[0], MAX_INSTANT)]


def test_where_resolve_is_decides_by_the_reference_type() -> None:
    assert entries_for(BP, "patient") == [ReferenceEntry("patient", "Patient", "p1")]
    group = {**BP, "subject": {"reference": "Group/g1"}}
    assert entries_for(group, "patient") == []
    assert entries_for(group, "subject") == [ReferenceEntry("subject", "Group", "g1")]


def test_composite_values_pair_components_of_the_same_element_only() -> None:
    entries = entries_for(BP, "component-code-value-quantity")
    pairs = {
        (c.components[0].code, c.components[1].value)  # type: ignore[union-attr]
        for c in entries
        if isinstance(c, CompositeEntry)
    }
    assert pairs == {("8480-6", 120.0), ("8462-4", 80.0)}
    first = entries[0]
    assert isinstance(first, CompositeEntry)
    assert first.components == (
        TokenEntry("component-code", LOINC, "8480-6"),
        QuantityEntry("component-value-quantity", 120.0, 119.5, 120.5, UCUM, "mm[Hg]", "mmHg"),
    )


def test_a_composite_needs_every_component() -> None:
    assert entries_for(BP, "code-value-quantity") == []  # the panel itself has no value
    assert len(entries_for(BP, "combo-code-value-quantity")) == 2


def test_observation_compartments_come_from_subject_and_performer() -> None:
    assert patient_compartments(BP) == ("Patient/p1", "Patient/p2")
    assert patient_compartments(BP, extract_entries(BP)) == ("Patient/p1", "Patient/p2")
    assert patient_compartments({**BP, "subject": {"reference": "Group/g"}, "performer": []}) == ()


def test_types_outside_the_patient_compartment_have_none() -> None:
    practitioner = {"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Who"}]}
    assert patient_compartments(practitioner) == ()


# ---------------------------------------------------------------------------------------------
# References and quantities


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("Patient/123", ("Patient", "123", None)),
        ("Patient/123/_history/4", ("Patient", "123", None)),
        ("https://other.example/fhir/Patient/9", ("Patient", None, "https://other.example/fhir/Patient/9")),
        (
            "https://other.example/fhir/Patient/9/_history/1",
            ("Patient", None, "https://other.example/fhir/Patient/9"),
        ),
        ("#contained-1", (None, None, "#contained-1")),
        (
            "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
            (None, None, "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"),
        ),
    ],
)
def test_split_reference(ref: str, expected: tuple[str | None, str | None, str | None]) -> None:
    assert split_reference(ref) == expected


def test_identifier_references_and_display_only_references() -> None:
    obs = {
        **BP,
        "subject": {
            "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"},
            "type": "Patient",
        },
        "performer": [{"display": "Dr Who"}],
    }
    assert entries_for(obs, "subject") == [
        ReferenceEntry("subject", "Patient", None, None, "https://fhir.nhs.uk/Id/nhs-number", "9000000009")
    ]
    assert entries_for(obs, "performer") == []


def test_canonical_references_are_indexed_without_the_version_and_as_written() -> None:
    plan = {
        "resourceType": "PlanDefinition",
        "status": "active",
        "relatedArtifact": [
            {"type": "depends-on", "resource": "http://example.org/Library/lib|1.2"},
            {"type": "successor", "resource": "http://example.org/PlanDefinition/next"},
        ],
    }
    assert entries_for(plan, "depends-on") == [
        ReferenceEntry("depends-on", None, None, "http://example.org/Library/lib"),
        ReferenceEntry("depends-on", None, None, "http://example.org/Library/lib|1.2"),
    ]
    assert entries_for(plan, "successor") == [
        ReferenceEntry("successor", None, None, "http://example.org/PlanDefinition/next")
    ]


def test_money_and_range_are_quantities() -> None:
    invoice = {"resourceType": "Invoice", "status": "issued", "totalNet": {"value": 12.5, "currency": "GBP"}}
    assert entries_for(invoice, "totalnet") == [
        QuantityEntry("totalnet", 12.5, 12.45, 12.55, "urn:iso:std:iso:4217", "GBP", "GBP")
    ]
    condition = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "onsetRange": {
            "low": {"value": 40, "system": UCUM, "code": "a"},
            "high": {"value": 50, "system": UCUM, "code": "a"},
        },
    }
    year = 31_557_600.0  # UCUM's Julian year in seconds, the canonical unit of `a`
    assert entries_for(condition, "onset-age") == [
        QuantityEntry("onset-age", 40.0, 40.0, 50.0, UCUM, "a", None)
    ]
    assert canonical_for(condition, "onset-age:canonical") == [
        QuantityEntry("onset-age:canonical", 40 * year, 40 * year, 50 * year, UCUM, "s", None),
    ]


def test_ucum_quantities_also_get_an_entry_in_canonical_units() -> None:
    obs = {**BP, "component": [], "valueQuantity": {"value": 4.5, "system": UCUM, "code": "mg/dL"}}
    assert entries_for(obs, "value-quantity") == [
        QuantityEntry("value-quantity", 4.5, 4.45, 4.55, UCUM, "mg/dL", None)
    ]
    assert canonical_for(obs, "value-quantity:canonical") == [
        QuantityEntry("value-quantity:canonical", 0.045, 0.0445, 0.0455, UCUM, "g/L", None),
    ]
    assert entries_for(obs, "value-quantity:canonical") == []  # only when asked for
    in_grams = {**obs, "valueQuantity": {"value": 0.045, "system": UCUM, "code": "g/L"}}
    assert [e.code for e in canonical_for(in_grams, "value-quantity:canonical")] == ["g/L"]  # type: ignore[union-attr]
    not_ucum = {**obs, "valueQuantity": {"value": 4.5, "system": "http://example.org/units", "code": "mg"}}
    assert canonical_for(not_ucum, "value-quantity:canonical") == []


def test_bundle_composition_indexes_only_a_first_entry_of_the_target_type() -> None:
    composition = {"resourceType": "Composition", "id": "c1"}
    document = {"resourceType": "Bundle", "type": "document", "entry": [{"resource": composition}]}
    assert entries_for(document, "composition") == [ReferenceEntry("composition", "Composition", "c1")]
    assert entries_for(document, "message") == []


def test_unknown_resource_types_are_refused() -> None:
    with pytest.raises(ValueError):
        extract_entries({"resourceType": "Nonsense"})
