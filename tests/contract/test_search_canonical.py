"""Reference parameters whose value is a canonical url: includes, revincludes, chains and `_has`.

A reference search parameter may point at a canonical (search.html#reference: "A reference to
another resource (Reference or canonical)"): QuestionnaireResponse.questionnaire names the
Questionnaire whose `url` it holds. Such a reference resolves to the live resources of the
parameter's target types with that `url`, within the caller's access, in every adapter.
https://hl7.org/fhir/R4/search.html#reference
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fhir_server.search.query import AccessFilter
from fhir_server.storage.port import Store
from tests.contract.test_search_store import LABELS, _op, find, ids, put

PHQ9 = "http://example.org/Questionnaire/phq9"
GAD7 = "http://example.org/Questionnaire/gad7"
CARE = "http://example.org/PlanDefinition/depression-care"


def questionnaire(id: str, url: str, status: str = "active", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Questionnaire", "id": id, "url": url, "status": status, **extra}


def answers(id: str, questionnaire: str, status: str = "completed") -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "id": id,
        "status": status,
        "questionnaire": questionnaire,
    }


async def delete(store: Store, resource_type: str, id: str) -> None:
    gone = {"resourceType": resource_type, "id": id}
    await store.write([replace(_op(gone), expected_version=1, body=None, entries=(), compartments=())])


async def _questionnaires(store: Store) -> None:
    """PHQ-9 (q1, active) with two responses, one naming version 1.0; GAD-7 (q2, draft, labelled
    restricted) with one;
    a deleted Questionnaire and a ValueSet that share PHQ-9's url; a response to an unknown url."""
    await put(
        store,
        questionnaire("q1", PHQ9, title="PHQ-9", version="1.0"),
        questionnaire(
            "q2", GAD7, status="draft", title="GAD-7", meta={"security": [{"system": LABELS, "code": "R"}]}
        ),
        questionnaire("q-gone", PHQ9, title="Gone"),
        {"resourceType": "ValueSet", "id": "vs1", "url": PHQ9, "status": "active"},
        answers("r1", PHQ9),
        answers("r2", f"{PHQ9}|1.0", status="in-progress"),
        answers("r3", GAD7, status="in-progress"),
        answers("r4", "http://example.org/Questionnaire/unknown"),
    )
    await delete(store, "Questionnaire", "q-gone")


async def included(store: Store, resource_type: str, query: str, **changes: Any) -> list[str]:
    page = await find(store, resource_type, query, **changes)
    return sorted(i.id for i in page.included)


async def test_include_follows_a_canonical_to_the_live_resource_of_the_target_type_with_that_url(
    store: Store,
) -> None:
    """Not the deleted Questionnaire with the same url, nor the ValueSet, nor GAD-7."""
    await _questionnaires(store)
    include = "_include=QuestionnaireResponse:questionnaire"
    assert await included(store, "QuestionnaireResponse", f"_id=r1&{include}") == ["q1"]
    assert await included(store, "QuestionnaireResponse", f"_id=r3&{include}") == ["q2"]
    assert await included(store, "QuestionnaireResponse", f"_id=r4&{include}") == []
    both = "_id=r1,r3&_include=QuestionnaireResponse:questionnaire:Questionnaire"
    assert await included(store, "QuestionnaireResponse", both) == ["q1", "q2"]


async def test_include_of_a_versioned_canonical_finds_the_resource_with_its_url(store: Store) -> None:
    """`url|1.0` resolves through its url (every version this server holds with that url)."""
    await _questionnaires(store)
    query = "_id=r2&_include=QuestionnaireResponse:questionnaire"
    assert await included(store, "QuestionnaireResponse", query) == ["q1"]


async def test_include_wildcard_and_iterate_follow_canonicals(store: Store) -> None:
    """`*` follows every reference parameter, canonicals included; `:iterate` follows a canonical
    from the resources a literal reference included."""
    await _questionnaires(store)
    await put(
        store,
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"text": "PHQ-9 score"},
            "derivedFrom": [{"reference": "QuestionnaireResponse/r1"}],
        },
    )
    assert await included(store, "QuestionnaireResponse", "_id=r1&_include=*") == ["q1"]
    assert await included(store, "QuestionnaireResponse", "_id=r1&_include=QuestionnaireResponse:*") == ["q1"]
    query = "_id=o1&_include=Observation:derived-from&_include:iterate=QuestionnaireResponse:questionnaire"
    assert await included(store, "Observation", query) == ["q1", "r1"]


async def test_revinclude_finds_the_resources_naming_the_url(store: Store) -> None:
    """The plain and the versioned canonical both refer to q1; the ValueSet with q1's url is not a
    Questionnaire, so nothing refers to it through `questionnaire`."""
    await _questionnaires(store)
    revinclude = "_revinclude=QuestionnaireResponse:questionnaire"
    assert await included(store, "Questionnaire", f"_id=q1&{revinclude}") == ["r1", "r2"]
    assert await included(store, "Questionnaire", "_id=q2&_revinclude=*") == ["r3"]
    assert await included(store, "ValueSet", f"_id=vs1&{revinclude}") == []


async def test_chain_through_a_canonical(store: Store) -> None:
    """`questionnaire.status=active` and `questionnaire:Questionnaire.title=...` test the
    Questionnaire the canonical names; a deleted one with the same url matches nothing."""
    await _questionnaires(store)
    assert await ids(store, "QuestionnaireResponse", "questionnaire.status=active") == ["r1", "r2"]
    assert await ids(store, "QuestionnaireResponse", "questionnaire:Questionnaire.title=gad") == ["r3"]
    assert await ids(store, "QuestionnaireResponse", "questionnaire:Questionnaire.title=gone") == []
    both = "questionnaire.status=active&questionnaire:Questionnaire.title=phq"
    assert await ids(store, "QuestionnaireResponse", f"status=completed&{both}") == ["r1"]


async def test_chains_of_two_levels_through_canonicals(store: Store) -> None:
    """A canonical then a canonical (CarePlan -> PlanDefinition -> Questionnaire), and a literal
    reference then a canonical (Observation -> QuestionnaireResponse -> Questionnaire)."""
    await _questionnaires(store)
    await put(
        store,
        {
            "resourceType": "PlanDefinition",
            "id": "pd1",
            "url": CARE,
            "status": "active",
            "action": [{"definitionCanonical": PHQ9}],
        },
        {
            "resourceType": "CarePlan",
            "id": "cp1",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": "Patient/p1"},
            "instantiatesCanonical": [CARE],
        },
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"text": "PHQ-9 score"},
            "derivedFrom": [{"reference": "QuestionnaireResponse/r2"}],
        },
    )
    chain = "instantiates-canonical:PlanDefinition.definition:Questionnaire"
    assert await ids(store, "CarePlan", f"{chain}.title=phq") == ["cp1"]
    assert await ids(store, "CarePlan", f"{chain}.title=gad") == []
    derived = "derived-from:QuestionnaireResponse.questionnaire:Questionnaire.title"
    assert await ids(store, "Observation", f"{derived}=phq") == ["o1"]
    assert await ids(store, "Observation", f"{derived}=gone") == []


async def test_has_through_a_canonical(store: Store) -> None:
    """`_has:QuestionnaireResponse:questionnaire:status=...` finds the Questionnaire named."""
    await _questionnaires(store)
    has = "_has:QuestionnaireResponse:questionnaire:status"
    assert await ids(store, "Questionnaire", f"{has}=completed") == ["q1"]
    assert await ids(store, "Questionnaire", f"{has}=in-progress") == ["q1", "q2"]


async def test_access_applies_to_canonical_includes_and_chains(store: Store) -> None:
    """A caller who may not see Questionnaires gets none included, and no chain through them."""
    await _questionnaires(store)
    query = "_id=r1&_include=QuestionnaireResponse:questionnaire"
    responses_only = AccessFilter(types=frozenset({"QuestionnaireResponse"}))
    assert await included(store, "QuestionnaireResponse", query) == ["q1"]
    assert await included(store, "QuestionnaireResponse", query, access=responses_only) == []
    chain = "questionnaire.status=active"
    assert await ids(store, "QuestionnaireResponse", chain) == ["r1", "r2"]
    assert await ids(store, "QuestionnaireResponse", chain, access=responses_only) == []
    revinclude = "_id=q1&_revinclude=QuestionnaireResponse:questionnaire"
    questionnaires_only = AccessFilter(types=frozenset({"Questionnaire"}))
    assert await included(store, "Questionnaire", revinclude, access=questionnaires_only) == []


async def test_labels_hide_a_canonical_target_from_includes_chains_and_has(store: Store) -> None:
    """GAD-7 is labelled restricted: a caller allowed normal data only neither gets it included nor
    finds responses through it; its responses are theirs to see."""
    await _questionnaires(store)
    normal = AccessFilter(allowed_labels=frozenset({(LABELS, "N")}))
    query = "_id=r1,r3&_include=QuestionnaireResponse:questionnaire"
    assert await included(store, "QuestionnaireResponse", query) == ["q1", "q2"]
    assert await included(store, "QuestionnaireResponse", query, access=normal) == ["q1"]
    chain = "questionnaire:Questionnaire.title=gad"
    assert await ids(store, "QuestionnaireResponse", chain) == ["r3"]
    assert await ids(store, "QuestionnaireResponse", chain, access=normal) == []
    has = "_has:QuestionnaireResponse:questionnaire:status=in-progress"
    assert await ids(store, "Questionnaire", has, access=normal) == ["q1"]
