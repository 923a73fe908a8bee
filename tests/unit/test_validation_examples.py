"""The official R4 examples: the 686 the R4B models can parse are accepted, the 15 others refused clearly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_server.errors import FhirError, NotSupported, Unprocessable
from fhir_server.validation import supported_types, validate_resource

EXAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "fhir-r4-examples"
R4_ONLY = {
    "EffectEvidenceSynthesis-example.json",
    "Evidence-example.json",
    "RiskEvidenceSynthesis-example.json",
    "SubstanceSpecification-example.json",
    *(
        f"MedicinalProduct{kind}-example.json"
        for kind in (
            "",
            "Authorization",
            "Contraindication",
            "Indication",
            "Ingredient",
            "Interaction",
            "Manufactured",
            "Packaged",
            "Pharmaceutical",
            "UndesirableEffect",
        )
    ),
}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return data


def outcome(resource: dict[str, Any], use_model: bool = True) -> FhirError | None:
    try:
        validate_resource(resource, use_model=use_model)
    except FhirError as exc:
        return exc
    return None


@pytest.mark.parametrize("use_model", [True, False], ids=["model", "walk-only"])
def test_all_686_valid_examples_are_accepted(use_model: bool) -> None:
    """Every official example of a supported type (bar qs1, which breaks R4 itself) validates."""
    names = sorted(p.name for p in EXAMPLES.glob("*.json"))
    accepted = [n for n in names if outcome(load(n), use_model) is None]
    assert len(names) == 701
    assert len(accepted) == 686
    assert set(names) - set(accepted) == R4_ONLY | {"Questionnaire-qs1.json"}


def test_r4_only_types_are_refused_as_not_supported() -> None:
    """R4 types the R4B models lack get a clear 'not supported', not a crash."""
    for name in sorted(R4_ONLY):
        error = outcome(load(name))
        resource_type = name.split("-")[0]
        assert isinstance(error, NotSupported), name
        assert str(error) == f"{resource_type} is an R4 type this server does not support"
        assert resource_type not in supported_types()
    assert len(R4_ONLY) == 14


@pytest.mark.parametrize("use_model", [True, False], ids=["model", "walk-only"])
def test_questionnaire_qs1_is_unprocessable_for_its_missing_link_ids(use_model: bool) -> None:
    """qs1 omits item.linkId (min 1) in nested items: 422 with each item's path."""
    error = outcome(load("Questionnaire-qs1.json"), use_model)
    assert isinstance(error, Unprocessable)
    expressions = {e for issue in error.issues for e in issue.expression}
    assert "Questionnaire.item[0].item[0].linkId" in expressions
    assert all(issue.code == "required" for issue in error.issues)


@pytest.mark.parametrize("name", ["Patient-example.json", "Bundle-bundle-example.json"])
def test_validation_leaves_the_resource_unchanged(name: str) -> None:
    """Validation only reads: the caller stores exactly what it sent."""
    resource = load(name)
    before = json.dumps(resource, sort_keys=True)
    validate_resource(resource)
    assert json.dumps(resource, sort_keys=True) == before
