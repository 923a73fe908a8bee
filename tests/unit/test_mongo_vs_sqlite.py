"""The Mongo adapter (on its in-process stand-in) answers searches exactly as the SQLite adapter does.

A differential check on real data: the official R4 examples plus a few labelled, compartmented
resources are written to both stores through the REST layer's own write planning, then the same
parsed queries run on both. The SQLite translation is the reference semantics; any difference in
matches (in order), included resources, totals or paging is a bug in one of them.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import pytest_asyncio

from fhir_server.rest.writes import plan_put
from fhir_server.search.parse import parse_search
from fhir_server.search.query import (
    AccessFilter,
    Clause,
    Include,
    SearchPage,
    SearchQuery,
    TokenValue,
    TypeRule,
)
from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.port import HistoryQuery, Store
from fhir_server.storage.sqlite import SqliteStore

EXAMPLES = Path(__file__).parents[1] / "fixtures" / "fhir-r4-examples"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
pytestmark = pytest.mark.asyncio(loop_scope="module")

Stores = tuple[Store, Store]


def _labelled(rid: str, label: str | None) -> dict[str, Any]:
    meta = {"security": [{"system": CONFIDENTIALITY, "code": label}]} if label else {}
    return {"resourceType": "Patient", "id": rid, "meta": meta, "name": [{"family": f"Fam{rid}"}]}


def _observation(rid: str, patient: str, category: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [{"coding": [{"system": "http://x/cat", "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
    }


SYNTHETIC = [
    _labelled("p1", None),
    _labelled("p2", "N"),
    _labelled("p3", "R"),
    _observation("o1", "p1", "vital-signs", "8867-4"),
    _observation("o2", "p1", "laboratory", "1-8"),
    _observation("o3", "p2", "vital-signs", "8867-4"),
    _observation("o4", "p3", "vital-signs", "29463-7"),
]


def _resources() -> list[dict[str, Any]]:
    found = [orjson.loads(f.read_bytes()) for f in sorted(EXAMPLES.glob("*.json"))]
    return [r for r in found if isinstance(r.get("id"), str)] + SYNTHETIC


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stores() -> AsyncIterator[Stores]:
    sqlite = SqliteStore(Path(tempfile.mkdtemp()) / "reference.sqlite3")
    mongo = MongoStore.in_memory_stand_in(database="differential")
    for store in (sqlite, mongo):
        await store.open()
    for i, resource in enumerate(_resources()):
        op = plan_put(resource, resource["id"], 0, T0 + timedelta(seconds=i // 3))  # some ties
        for store in (sqlite, mongo):
            await store.write([op])
    yield sqlite, mongo
    await mongo.drop_database()
    for store in (sqlite, mongo):
        await store.close()


def _query(line: str) -> SearchQuery:
    rtype, _, qs = line.partition("?")
    params = [(k, v) for k, _, v in (p.partition("=") for p in qs.split("&") if p)]
    return parse_search(rtype or None, params).query


def _summary(page: SearchPage) -> tuple[list[str], list[str], int | None, int | None]:
    keys = [f"{m.resource_type}/{m.id}/{m.version_id}" for m in page.matches]
    included = sorted(f"{m.resource_type}/{m.id}" for m in page.included)
    return keys, included, page.total, page.next_offset


async def _both(stores: Stores, query: SearchQuery) -> None:
    sqlite, mongo = stores
    assert _summary(await mongo.search(query)) == _summary(await sqlite.search(query))


QUERIES = [
    "Patient?",
    "Patient?gender=male",
    "Patient?gender:not=male&_count=50",
    "Patient?name=pet",
    "Patient?name:exact=Peter",
    "Patient?name:contains=ete",
    "Patient?family=chalmers,Fam",
    "Patient?birthdate=1974-12-25",
    "Patient?birthdate=ge1970&birthdate=lt1980",
    "Patient?birthdate=ne1974-12-25&_count=50",
    "Patient?birthdate=sa1970,eb1950",
    "Patient?birthdate=le1960&_count=50",
    "Patient?birthdate:missing=true&_count=50",
    "Patient?identifier=urn:oid:1.2.36.146.595.217.0.1|12345",
    "Patient?identifier=12345",
    "Patient?_id=example,p1",
    "Patient?_sort=birthdate",
    "Patient?_sort=-birthdate&_count=3",
    "Patient?_sort=family,-_id&_count=50",
    "Patient?_sort=-_lastUpdated&_count=10",
    "Observation?code=http://loinc.org|29463-7",
    "Observation?code=29463-7,8867-4",
    "Observation?code=http://loinc.org|",
    "Observation?code:not=29463-7&_count=5",
    "Observation?code:text=weight",
    "Observation?value-quantity=gt100",
    "Observation?value-quantity=100|http://unitsofmeasure.org|kg",
    "Observation?value-quantity=ap185|http://unitsofmeasure.org|[lb_av]",
    "Observation?value-quantity=le6.2|http://unitsofmeasure.org|mmol/L",
    "Observation?value-quantity=ge70&value-quantity=lt80",
    "Observation?value-quantity=ne72||kg",
    "Observation?subject=Patient/example",
    "Observation?subject=example&_count=50",
    "Observation?subject:Patient=p1",
    "Observation?subject:Patient.name=peter",
    "Observation?subject:Patient.organization.name=health&_count=50",
    "Observation?subject:identifier=urn:oid:1.2.36.146.595.217.0.1|12345",
    "Patient?_has:Observation:patient:code=29463-7",
    "Patient?_has:Observation:subject:_has:Provenance:target:_id=example",
    "Observation?_include=Observation:subject",
    "Observation?_include=Observation:subject:Patient&_include=Observation:performer",
    "Patient?_revinclude=Observation:subject&_id=example",
    "Patient?_revinclude:iterate=Observation:subject&_count=2",
    "Encounter?_include=Encounter:*&_count=3",
    "MedicationRequest?_include=MedicationRequest:medication&_include:iterate=Medication:manufacturer",
    "Observation?date=2012",
    "Observation?date=ap2013-04-02",
    "Observation?date=gt2013-04-02T09:30:10Z",
    "Observation?date=eb2012-09-17&_count=50",
    "Observation?component-code-value-quantity=http://loinc.org|8480-6$gt100",
    "Observation?combo-code-value-quantity=http://loinc.org|8480-6$107",
    "Observation?_lastUpdated=gt2026-01-01T00:05:00Z&_count=5",
    "Observation?_lastUpdated=le2026-01-01T00:01:00Z,ap2026-01-01T00:02:00Z",
    "Observation?_text=weight",
    "Observation?_text=body weight,heart",
    "Patient?_content=peter",
    "Observation?status:missing=true",
    "Observation?_sort=-date,code&_count=7",
    "Observation?_sort=code&_count=7",
    "Observation?_sort=subject&_count=7",
    "Observation?_sort=value-quantity&_count=7",
    "RiskAssessment?probability=gt0.5",
    "RiskAssessment?probability=ap0.1",
    "ValueSet?url:below=http://hl7.org/fhir/ValueSet&_count=50",
    "ValueSet?url:above=http://hl7.org/fhir/ValueSet/example-extensional/extra",
    "CodeSystem?url=http://hl7.org/fhir/CodeSystem/example",
    "?_type=Patient,Practitioner&_count=5",
    "?_lastUpdated=lt2026-01-01T00:00:10Z",
    "Patient?_count=0",
    "Observation?_total=none&_count=5",
]


@pytest.mark.parametrize("line", QUERIES)
async def test_query_answers_match(stores: Stores, line: str) -> None:
    await _both(stores, _query(line))


PAGED = [
    "Observation?_count=7",
    "Patient?_sort=-birthdate&_count=4",
    "Observation?_sort=subject,-date&_count=9",
]


async def _walk(store: Store, query: SearchQuery) -> list[str]:
    """Every match, page by page through next_offset (the Mongo adapter resumes by keyset)."""
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = await store.search(_with(query, offset=offset))
        seen += [f"{m.resource_type}/{m.id}" for m in page.matches]
        offset = page.next_offset
    return seen


Q = TypeVar("Q", SearchQuery, HistoryQuery)


def _with(query: Q, **changes: Any) -> Q:
    return replace(query, **changes)


@pytest.mark.parametrize("line", PAGED)
async def test_paging_walks_the_same_sequence(stores: Stores, line: str) -> None:
    sqlite, mongo = stores
    query = _query(line)
    walked = await _walk(mongo, query)
    assert walked == await _walk(sqlite, query)
    assert len(walked) == len(set(walked))


VITALS = Clause("category", "token", (TokenValue("http://x/cat", "vital-signs"),))
ACCESS = [
    AccessFilter(types=frozenset({"Patient"})),
    AccessFilter(types=frozenset()),
    AccessFilter(compartments=frozenset({"Patient/p1"})),
    AccessFilter(compartments=frozenset({"Patient/p1", "Patient/example"})),
    AccessFilter(allowed_labels=frozenset({(CONFIDENTIALITY, "N")})),
    AccessFilter(allowed_labels=frozenset({(CONFIDENTIALITY, "N")}), allow_unlabeled=False),
    AccessFilter(allowed_labels=frozenset()),
    AccessFilter(extra=(TypeRule("Observation", ((VITALS,),)),)),
    AccessFilter(
        compartments=frozenset({"Patient/p1", "Patient/p2", "Patient/p3"}),
        allowed_labels=frozenset({(CONFIDENTIALITY, "N")}),
        extra=(
            TypeRule("Observation", ((VITALS,), (_query("Observation?subject:Patient.name=famp3").criteria))),
        ),
    ),
]
ORGANISATION = _query("Patient?organization=Organization/1").criteria
ACCESS += [
    AccessFilter(patient_criteria=ORGANISATION),
    AccessFilter(patient_criteria=_query("Patient?name=fam").criteria, types=frozenset({"Observation"})),
    AccessFilter(
        any_of=(
            AccessFilter(
                compartments=frozenset({"Patient/p1"}), extra=(TypeRule("Observation", ((VITALS,),)),)
            ),
            AccessFilter(compartments=frozenset({"Patient/p3"}), allowed_labels=frozenset()),
            AccessFilter(patient_criteria=ORGANISATION),
        )
    ),
]
ACCESS_QUERIES = [
    "Observation?_count=50",
    "Patient?_count=50&_revinclude=Observation:subject",
    "Observation?_include=Observation:subject&_count=50",
    "Observation?subject:Patient.name=fam",
    "Patient?_has:Observation:subject:status=final",
    "?_type=Patient,Observation&_count=50",
]


@pytest.mark.parametrize("access", ACCESS, ids=range(len(ACCESS)))
@pytest.mark.parametrize("line", ACCESS_QUERIES)
async def test_access_narrowing_matches(stores: Stores, line: str, access: AccessFilter) -> None:
    await _both(stores, _with(_query(line), access=access))


@pytest.mark.parametrize("compartment", ["Patient/example", "Patient/p1", "Patient/none"])
async def test_compartment_search_matches(stores: Stores, compartment: str) -> None:
    for types in [(), ("Observation",), ("Patient", "Observation", "Encounter")]:
        await _both(stores, SearchQuery(resource_types=types, compartment=compartment, count=100))


async def test_include_without_source_type(stores: Stores) -> None:
    query = _with(_query("Observation?_count=10"), includes=(Include(None, None),))
    await _both(stores, query)


HISTORIES = [
    HistoryQuery(count=97),
    HistoryQuery("Observation", count=7),
    HistoryQuery(since=T0 + timedelta(seconds=100), count=50),
    HistoryQuery(at=T0 + timedelta(seconds=30), count=20),
    HistoryQuery(type_filter=frozenset({"Patient", "Encounter"}), count=9),
]


async def _history_walk(store: Store, query: HistoryQuery) -> list[tuple[str, int, int]]:
    """Every version, page by page (the Mongo adapter resumes by keyset on (last_updated, seq))."""
    seen: list[tuple[str, int, int]] = []
    offset: int | None = 0
    while offset is not None:
        page = await store.history(_with(query, offset=offset))
        seen += [(f"{e.resource_type}/{e.id}", e.version_id, page.total) for e in page.entries]
        offset = page.next_offset
    return seen


@pytest.mark.parametrize("query", HISTORIES, ids=range(len(HISTORIES)))
async def test_history_pages_match(stores: Stores, query: HistoryQuery) -> None:
    sqlite, mongo = stores
    assert await _history_walk(mongo, query) == await _history_walk(sqlite, query)


async def test_history_of_no_entries_per_page(stores: Stores) -> None:
    sqlite, mongo = stores
    for query in (
        HistoryQuery(count=0, offset=3),
        HistoryQuery("Patient", at=T0 + timedelta(seconds=9), count=0),
    ):
        assert await mongo.history(query) == await sqlite.history(query)
