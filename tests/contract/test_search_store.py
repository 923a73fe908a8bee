"""Search through the storage port: real resources, entries from extract_entries, `store.search`.

One suite for every adapter that implements search (see `store` below). Each test writes its data,
parses a query string exactly as the REST layer does, and checks which ids come back.
https://hl7.org/fhir/R4/search.html
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from fhir_server.errors import BadRequest, ConditionConflict
from fhir_server.indexing.extract import extract_entries, patient_compartments
from fhir_server.rest.context import RequestContext
from fhir_server.rest.search import search_bundle
from fhir_server.search.parse import parse_search
from fhir_server.search.query import (
    AccessFilter,
    Clause,
    SearchPage,
    SearchQuery,
    TokenValue,
    TypeRule,
)
from fhir_server.storage.port import Store, WriteOp

LABELS = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
LOINC = "http://loinc.org"


_CLOCK = [datetime(2026, 1, 1, tzinfo=UTC)]


def _op(resource: dict[str, Any], expected: int = 0) -> WriteOp:
    _CLOCK[0] += timedelta(seconds=1)  # distinct, increasing lastUpdated per write
    entries = extract_entries(resource)
    compartments = patient_compartments(resource, entries)
    body = orjson.dumps(resource)
    return WriteOp(resource["resourceType"], resource["id"], expected, _CLOCK[0], body, entries, compartments)


async def put(store: Store, *resources: dict[str, Any]) -> None:
    await store.write([_op(r) for r in resources])


async def find(store: Store, resource_type: str | None, query: str, **changes: Any) -> SearchPage:
    params = [tuple(p.split("=", 1)) for p in query.split("&")] if query else []
    parsed = parse_search(resource_type, params)  # type: ignore[arg-type]
    return await store.search(replace(parsed.query, **changes))


async def ids(store: Store, resource_type: str | None, query: str, **changes: Any) -> list[str]:
    page = await find(store, resource_type, query, **changes)
    return [m.id for m in page.matches]


def patient(id: str, family: str = "Smith", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id, "name": [{"family": family, "given": ["Ann"]}], **extra}


def obs(id: str, subject: str = "p1", code: str = "8480-6", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code, "display": "Systolic blood pressure"}]},
        "subject": {"reference": f"Patient/{subject}"},
        **extra,
    }


# -- string ---------------------------------------------------------------------------------------


async def test_string_matches_folded_prefix(store: Store) -> None:
    """`name=smi` is a case- and accent-insensitive starts-with on any part of the name."""
    await put(
        store,
        patient("p1", "Smith"),
        patient("p2", "Smythe"),
        patient("p3", "Émile"),
        patient("p4", "Blacksmith"),
    )
    assert await ids(store, "Patient", "name=smi") == ["p1"]
    assert await ids(store, "Patient", "name=SM") == ["p1", "p2"]
    assert await ids(store, "Patient", "name=emi") == ["p3"]


async def test_string_exact_and_contains(store: Store) -> None:
    await put(store, patient("p1", "Smith"), patient("p2", "smith"), patient("p3", "Blacksmith"))
    assert await ids(store, "Patient", "family:exact=Smith") == ["p1"]
    assert await ids(store, "Patient", "family:contains=SMITH") == ["p1", "p2", "p3"]


# -- token ----------------------------------------------------------------------------------------


async def test_token_forms(store: Store) -> None:
    """code, system|code, |code (no system) and system| (any code of the system)."""
    await put(
        store,
        patient("p1", identifier=[{"system": "nhs", "value": "111"}]),
        patient("p2", identifier=[{"value": "111"}]),
        patient("p3", identifier=[{"system": "mrn", "value": "222"}]),
    )
    assert await ids(store, "Patient", "identifier=111") == ["p1", "p2"]
    assert await ids(store, "Patient", "identifier=nhs|111") == ["p1"]
    assert await ids(store, "Patient", "identifier=|111") == ["p2"]
    assert await ids(store, "Patient", "identifier=mrn|") == ["p3"]
    assert await ids(store, "Patient", "identifier=nhs|111,mrn|222") == ["p1", "p3"]


async def test_token_not_includes_resources_without_the_code(store: Store) -> None:
    """`:not` = no matching token, including resources with no value at all."""
    await put(store, patient("p1", gender="male"), patient("p2", gender="female"), patient("p3"))
    assert await ids(store, "Patient", "gender:not=male") == ["p2", "p3"]


@pytest.mark.parametrize(
    "query",
    [
        "status:not=final",
        "status:not=final,amended",
        "status:not=http://hl7.org/fhir/observation-status|final",
        "status:not=final,http://hl7.org/fhir/observation-status|final",  # one entry, both values
        "code:not=http://loinc.org|8480-6",
        "code:not=8480-6",  # two of one Observation's codes match: counted once
    ],
)
async def test_a_rare_negation_pages_and_counts_as_when_read_whole(
    store: Store, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """Nearly every Observation is final and a systolic reading; the few that are not come last, one
    has no status (a match of `:not`), one no code, and one three codes, two of them negated (no match).
    With the walking thresholds lowered, SQLite walks past its edge and counts the matches as the
    live Observations less those with the negated value: paged by cursor and by offset, the same
    matches as one whole page, and as many as the total it gives when asked; a deleted one never."""
    made = [obs(f"o{i:02}") for i in range(30)]
    made[24]["status"] = "amended"
    made[25]["code"] = {"text": "Reading without a code"}
    made[26]["status"] = "preliminary"
    del made[27]["status"]
    made[28]["code"]["coding"] += [{"system": LOINC, "code": "8462-4"}, {"system": "urn:x", "code": "8480-6"}]
    made[29]["code"]["coding"] = [{"system": LOINC, "code": "8462-4"}]
    made[29]["status"] = "cancelled"
    await put(store, *made, {**obs("o30"), "status": "amended"})
    await store.write([replace(_op(obs("o30")), expected_version=1, body=None, entries=(), compartments=())])
    by_cursor, by_offset, expected = await _walked_and_whole(store, monkeypatch, "Observation", query)
    assert by_cursor == expected == by_offset and "o30" not in expected
    assert 2 <= len(expected) <= 5 and ("o27" in expected) == query.startswith("status")
    assert (await find(store, "Observation", f"{query}&_total=accurate&_count=2")).total == len(expected)
    assert (await find(store, "Observation", f"{query}&_count=0")).total == len(expected)


@pytest.mark.parametrize(
    ("resource_type", "query"),
    [
        ("Observation", "status:not=final&_sort=date"),
        ("Observation", "status:not=final&_sort=-date"),
        ("Patient", "gender:not=male&_sort=family"),
    ],
)
async def test_a_walked_sorted_negation_reports_no_unasked_total(
    store: Store, resource_type: str, query: str
) -> None:
    """Sorted by a date or string, a lone `:not` is walked in that order like any other search that
    walks its criteria, and gives no total unasked in SQLite (counting it would probe the type
    resource by resource); the stand-in counts. Found in review."""
    await put(
        store,
        *(
            obs(f"o{i}", status="amended" if i % 2 else "final", effectiveDateTime=f"2026-01-{10 + i}")
            for i in range(8)
        ),
        *(patient(f"p{i}", f"Fam{i}", gender="female" if i % 2 else "male") for i in range(8)),
    )
    page = await find(store, resource_type, f"{query}&_count=2")
    assert len(page.matches) == 2 and page.next_offset == 2
    assert page.total == (None if type(store).__name__ == "SqliteStore" else 4)


async def test_token_text(store: Store) -> None:
    await put(store, obs("o1"), {**obs("o2"), "code": {"text": "Systolic reading"}}, obs("o3", code="x"))
    assert await ids(store, "Observation", "code:text=systolic") == ["o1", "o2", "o3"]
    assert await ids(store, "Observation", "code:text=reading") == ["o2"]
    assert await ids(store, "Observation", "code:text=diastolic") == []


async def test_token_of_type(store: Store) -> None:
    mr = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}
    await put(store, patient("p1", identifier=[{"type": mr, "system": "x", "value": "42"}]), patient("p2"))
    query = "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|42"
    assert await ids(store, "Patient", query) == ["p1"]


# -- date -----------------------------------------------------------------------------------------


async def test_partial_dates(store: Store) -> None:
    """`date=2026` contains a minute in 2026; a minute does not contain the whole year 2026."""
    await put(
        store,
        obs("minute", effectiveDateTime="2026-11-24T10:00:00Z"),
        obs("year", effectiveDateTime="2026"),
        obs("other", effectiveDateTime="2025-12-31T23:59:59Z"),
    )
    assert await ids(store, "Observation", "date=2026") == ["minute", "year"]
    assert await ids(store, "Observation", "date=2026-11-24") == ["minute"]
    assert await ids(store, "Observation", "date=2026-11-24T10:00Z") == ["minute"]
    assert await ids(store, "Observation", "date=ne2026") == ["other"]


async def test_date_prefixes(store: Store) -> None:
    await put(
        store,
        obs("before", effectiveDateTime="2026-11-23"),
        obs("on", effectiveDateTime="2026-11-24T12:00:00Z"),
        obs("after", effectiveDateTime="2026-11-25"),
    )
    assert await ids(store, "Observation", "date=gt2026-11-24") == ["after"]
    assert await ids(store, "Observation", "date=ge2026-11-24") == ["on", "after"]
    assert await ids(store, "Observation", "date=lt2026-11-24") == ["before"]
    assert await ids(store, "Observation", "date=le2026-11-24") == ["before", "on"]
    assert await ids(store, "Observation", "date=sa2026-11-24") == ["after"]
    assert await ids(store, "Observation", "date=eb2026-11-24") == ["before"]


async def test_periods_with_open_ends(store: Store) -> None:
    """An open-ended Period extends forever: it is after any date and never ends before one."""
    await put(
        store,
        obs("open", effectivePeriod={"start": "2026-01-01"}),
        obs("closed", effectivePeriod={"start": "2026-01-01", "end": "2026-01-31"}),
        obs("no-start", effectivePeriod={"end": "2025-06-01"}),
    )
    assert await ids(store, "Observation", "date=gt2030") == ["open"]
    assert await ids(store, "Observation", "date=lt2025") == ["no-start"]
    assert await ids(store, "Observation", "date=2026-01") == ["closed"]
    assert await ids(store, "Observation", "date=sa2025-12-31") == ["open", "closed"]
    assert await ids(store, "Observation", "date=eb2026") == ["no-start"]


async def test_ge_and_le_on_periods_that_end_before_they_start(store: Store) -> None:
    """Nothing stops a Period whose end precedes its start (FHIR's per-1 is not enforced): `ge` and
    `le` judge it by the same rule as every entry, whichever way the store reads them (alone, `ge`
    drives the search through two index ranges; beside another criterion it may be a probe)."""
    await put(
        store,
        obs("inverted", effectivePeriod={"start": "2026-03-15T10:00:00Z", "end": "2026-03-01"}),
        obs("one-day", effectivePeriod={"start": "2026-03-16", "end": "2026-03-15"}),
        obs("march", effectivePeriod={"start": "2026-03-01", "end": "2026-03-31"}),
        obs("before", effectiveDateTime="2026-02-01"),
    )
    assert await ids(store, "Observation", "date=ge2026-03-15") == ["inverted", "march"]
    assert await ids(store, "Observation", "date=ge2026-03-16") == ["one-day", "march"]
    assert await ids(store, "Observation", "date=ge2026-03-16&code=8480-6") == ["one-day", "march"]
    assert await ids(store, "Observation", "date=le2026-03-15") == ["inverted", "march", "before"]
    assert await ids(store, "Observation", "date=le2026-03-01") == ["before"]


async def test_date_ap(store: Store) -> None:
    """`ap`: within 10% of the distance from now (at least a day)."""
    await put(store, obs("near", effectiveDateTime="2000-01-10"), obs("far", effectiveDateTime="1960-01-01"))
    assert await ids(store, "Observation", "date=ap2000-01-01") == ["near"]


# -- number, quantity -----------------------------------------------------------------------------


async def test_quantity_precision_prefixes_and_units(store: Store) -> None:
    def q(value: float, code: str = "mg") -> dict[str, Any]:
        return {"value": value, "system": "http://unitsofmeasure.org", "code": code, "unit": code}

    await put(
        store,
        obs("a", valueQuantity=q(5.4)),
        obs("b", valueQuantity=q(5.5)),
        obs("c", valueQuantity=q(5.4, "g")),
    )
    assert await ids(store, "Observation", "value-quantity=5.4") == ["a", "c"]
    assert await ids(store, "Observation", "value-quantity=5.4|http://unitsofmeasure.org|mg") == ["a"]
    assert await ids(store, "Observation", "value-quantity=5.4||g") == ["c"]
    assert await ids(store, "Observation", "value-quantity=gt5.4") == ["b"]
    assert await ids(store, "Observation", "value-quantity=le5.4") == ["a", "c"]
    assert await ids(store, "Observation", "value-quantity=ne5.4") == ["b"]
    assert await ids(store, "Observation", "value-quantity=ap5") == ["a", "b", "c"]


async def test_number(store: Store) -> None:
    def risk(id: str, p: float) -> dict[str, Any]:
        subject = {"reference": "Patient/p1"}
        prediction = [{"probabilityDecimal": p}]
        return {
            "resourceType": "RiskAssessment",
            "id": id,
            "status": "final",
            "subject": subject,
            "prediction": prediction,
        }

    await put(store, risk("r1", 0.2), risk("r2", 0.8))
    assert await ids(store, "RiskAssessment", "probability=0.2") == ["r1"]
    assert await ids(store, "RiskAssessment", "probability=gt0.5") == ["r2"]
    assert await ids(store, "RiskAssessment", "probability=lt0.5,gt0.7") == ["r1", "r2"]


async def test_number_prefixes_on_a_range_compare_its_extent(store: Store) -> None:
    """A Range is compared by its ends (search.html#number, as dates with Periods): eq needs the
    search value's precision range to contain it, gt/ge/lt/le/sa/eb put it against the value, ap
    asks for overlap. Single numbers keep their rules alongside."""

    def risk(id: str, prediction: dict[str, Any]) -> dict[str, Any]:
        subject = {"reference": "Patient/p1"}
        return {"resourceType": "RiskAssessment", "id": id, "status": "final", "subject": subject,
                "prediction": [prediction]}  # fmt: skip

    await put(
        store,
        risk("r", {"probabilityRange": {"low": {"value": 20}, "high": {"value": 30}}}),
        risk("open", {"probabilityRange": {"low": {"value": 28}}}),
        risk("n", {"probabilityDecimal": 25}),
    )
    expected = {
        "20": [], "25": ["n"], "ne25": ["open", "r"], "ne20": ["n", "open", "r"],
        "gt25": ["open", "r"], "ge25": ["n", "open", "r"], "lt25": ["r"], "le25": ["n", "r"],
        "ap25": ["n", "r"], "sa10": ["n", "open", "r"], "sa25": ["open"], "eb40": ["n", "r"],
        "eb30": ["n"], "gt35": ["open"], "lt15": [], "ge30": ["open", "r"], "le20": ["r"], "lt20": [],
    }  # fmt: skip
    for value, found in expected.items():
        assert sorted(await ids(store, "RiskAssessment", f"probability={value}")) == found, value


async def test_quantity_prefixes_on_a_range_compare_its_extent(store: Store) -> None:
    """Quantities from a Range (Condition.onsetRange) follow the same rules as numbers."""
    age = "http://unitsofmeasure.org"

    def condition(id: str, **onset: Any) -> dict[str, Any]:
        return {"resourceType": "Condition", "id": id, "subject": {"reference": "Patient/p1"}, **onset}

    years = {"system": age, "code": "a", "unit": "years"}
    await put(
        store,
        condition("range", onsetRange={"low": {"value": 20, **years}, "high": {"value": 30, **years}}),
        condition("age", onsetAge={"value": 25, **years}),
    )
    assert await ids(store, "Condition", "onset-age=20") == []
    assert await ids(store, "Condition", "onset-age=gt25") == ["range"]
    assert sorted(await ids(store, "Condition", "onset-age=ge25|http://unitsofmeasure.org|a")) == [
        "age",
        "range",
    ]
    assert sorted(await ids(store, "Condition", "onset-age=ap25")) == ["age", "range"]
    assert await ids(store, "Condition", "onset-age=lt21") == ["range"]


async def _bundle_ids(store: Store, resource_type: str, query: str) -> list[str]:
    """The ids a search answers through the REST layer (which expands `:in` value sets first)."""
    params = [tuple(p.split("=", 1)) for p in query.split("&")]
    ctx = RequestContext(store, "http://testserver/fhir")
    body = orjson.loads(await search_bundle(ctx, resource_type, params))  # type: ignore[arg-type]
    return sorted(e["resource"]["id"] for e in body.get("entry", []))


async def test_in_picks_the_value_set_version_and_takes_lists_and_literal_references(store: Store) -> None:
    """`:in=url|version` that version; a bare url the latest (highest version); a comma list any of
    them (OR); `ValueSet/[id]` the value set stored under that id."""

    def value_set(id: str, url: str, version: str | None, *codes: str) -> dict[str, Any]:
        include = [{"system": "urn:x", "concept": [{"code": c} for c in codes]}]
        versioned = {"version": version} if version else {}
        return {"resourceType": "ValueSet", "id": id, "url": url, **versioned, "status": "active",
                "compose": {"include": include}}  # fmt: skip

    def coded(id: str, code: str) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": id, "status": "final",
                "code": {"coding": [{"system": "urn:x", "code": code}]}}  # fmt: skip

    await put(
        store,
        value_set("vs10", "http://ex.org/vs1", "10", "C"),
        value_set("vs1", "http://ex.org/vs1", "1", "A", "B"),
        value_set("vs9", "http://ex.org/vs1", "9", "Z"),
        value_set("other", "http://ex.org/vs2", None, "Q"),
        *(coded(f"o{c}", c) for c in "ABCZQ"),
    )
    assert await _bundle_ids(store, "Observation", "code:in=http://ex.org/vs1|1") == ["oA", "oB"]
    assert await _bundle_ids(store, "Observation", "code:in=http://ex.org/vs1|9") == ["oZ"]
    assert await _bundle_ids(store, "Observation", "code:in=http://ex.org/vs1") == ["oC"]  # 10 > 9
    assert await _bundle_ids(store, "Observation", "code:in=http://ex.org/vs1|1,http://ex.org/vs2") == [
        "oA", "oB", "oQ",
    ]  # fmt: skip
    assert await _bundle_ids(store, "Observation", "code:not-in=http://ex.org/vs1|1,ValueSet/other") == [
        "oC", "oZ",
    ]  # fmt: skip
    assert await _bundle_ids(store, "Observation", "code:in=ValueSet/vs9") == ["oZ"]
    assert await _bundle_ids(store, "Observation", "code:in=http://testserver/fhir/ValueSet/vs9") == ["oZ"]
    for unknown in ("http://ex.org/vs1|2", "ValueSet/nope", "http://ex.org/vs1,http://ex.org/none"):
        with pytest.raises(BadRequest, match="is not one this server holds"):
            await _bundle_ids(store, "Observation", f"code:in={unknown}")


# -- reference, uri, composite --------------------------------------------------------------------


async def test_reference_forms(store: Store) -> None:
    await put(
        store,
        obs("o1", subject="p1"),
        obs("o2", subject="p2"),
        {**obs("o3"), "subject": {"identifier": {"system": "nhs", "value": "9"}}},
        {**obs("o4"), "subject": {"reference": "http://other.example/fhir/Patient/p1"}},
    )
    assert await ids(store, "Observation", "subject=Patient/p1") == ["o1"]
    assert await ids(store, "Observation", "subject=p1") == ["o1"]
    assert await ids(store, "Observation", "subject:Patient=p2") == ["o2"]
    assert await ids(store, "Observation", "subject:identifier=nhs|9") == ["o3"]
    assert await ids(store, "Observation", "subject=http://other.example/fhir/Patient/p1") == ["o4"]


async def test_reference_identifier_with_an_empty_system_means_no_system(store: Store) -> None:
    """`:identifier=|value` is an Identifier without a system, as for tokens (`|code`)."""
    await put(
        store,
        {**obs("o1"), "subject": {"identifier": {"system": "urn:s", "value": "v1"}}},
        {**obs("o2"), "subject": {"identifier": {"value": "v1"}}},
    )
    assert await ids(store, "Observation", "subject:identifier=|v1") == ["o2"]
    assert await ids(store, "Observation", "subject:identifier=urn:s|v1") == ["o1"]
    assert await ids(store, "Observation", "subject:identifier=v1") == ["o1", "o2"]


async def test_canonical_with_a_version_finds_that_version_and_without_one_every_version(
    store: Store,
) -> None:
    """search.html#versions: `questionnaire=url|2.0` means version 2.0 of that canonical; the
    url alone means any version, or none."""

    def answers(id: str, questionnaire: str) -> dict[str, Any]:
        return {
            "resourceType": "QuestionnaireResponse",
            "id": id,
            "status": "completed",
            "questionnaire": questionnaire,
        }

    q = "http://example.org/Questionnaire/phq9"
    await put(store, answers("v1", f"{q}|1.0"), answers("v2", f"{q}|2.0"), answers("none", q))
    await put(store, answers("other", "http://example.org/Questionnaire/phq9b|2.0"))
    assert await ids(store, "QuestionnaireResponse", f"questionnaire={q}|2.0") == ["v2"]
    assert await ids(store, "QuestionnaireResponse", f"questionnaire={q}|1.0,{q}|2.0") == ["v1", "v2"]
    assert await ids(store, "QuestionnaireResponse", f"questionnaire={q}") == ["v1", "v2", "none"]
    assert await ids(store, "QuestionnaireResponse", f"questionnaire={q}|") == ["v1", "v2", "none"]
    assert await ids(store, "QuestionnaireResponse", f"questionnaire={q}|3.0") == []
    assert await ids(store, "QuestionnaireResponse", "questionnaire:missing=true") == []


async def test_uri_below_and_above(store: Store) -> None:
    def vs(id: str, url: str) -> dict[str, Any]:
        return {"resourceType": "ValueSet", "id": id, "status": "active", "url": url}

    await put(store, vs("a", "http://acme.org/fhir/ValueSet/a"), vs("b", "http://acme.org/other"))
    assert await ids(store, "ValueSet", "url=http://acme.org/other") == ["b"]
    assert await ids(store, "ValueSet", "url:below=http://acme.org/fhir") == ["a"]
    assert await ids(store, "ValueSet", "url:above=http://acme.org/fhir/ValueSet/a/extra") == ["a"]


async def test_uri_below_and_above_match_whole_path_segments(store: Store) -> None:
    """search.html#uri: `:below` is the url or under it (`/`), `:above` the url or a segment
    ancestor of it; `http://acme.org/fhirplace` is not below `http://acme.org/fhir`."""
    urls = {
        "v1": "http://acme.org/fhir/ValueSet/123",
        "v2": "http://acme.org/fhir",
        "v3": "http://acme.org/fhirplace/ValueSet/1",
        "v4": "http://acme.org/fh",
        "v5": "http://acme.org/fhir/ValueSet/123/_history/5",
        "v6": "http://acme.org/fhir/",
        "v7": "http://acme.org/fhir|2.0",  # a version of the canonical http://acme.org/fhir
        "v8": "http://acme.org/fhir/ValueSet/123|1.0",
        "v9": "http://acme.org/fhir/ValueSet/1234|1.0",
    }
    await put(
        store, *({"resourceType": "ValueSet", "id": i, "status": "active", "url": u} for i, u in urls.items())
    )
    found = {
        "url:below=http://acme.org/fhir": ["v1", "v2", "v5", "v6", "v7", "v8", "v9"],
        "url:below=http://acme.org/fhir/": ["v1", "v2", "v5", "v6", "v7", "v8", "v9"],
        "url:below=http://acme.org/fhir/ValueSet/123": ["v1", "v5", "v8"],
        "url:above=http://acme.org/fhir/ValueSet/123": ["v1", "v2", "v6"],
        "url:above=http://acme.org/fhir/ValueSet/123/_history/5": ["v1", "v2", "v5", "v6"],
        "url:above=http://acme.org/fhirplace/ValueSet/1": ["v3"],
    }
    for query, expected in found.items():
        assert sorted(await ids(store, "ValueSet", query)) == expected, query


async def test_composite_code_value_quantity(store: Store) -> None:
    """The code and the value must belong to the same observation component."""
    q = {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
    await put(store, obs("o1", valueQuantity=q), obs("o2", code="other", valueQuantity=q))
    assert await ids(store, "Observation", f"code-value-quantity={LOINC}|8480-6$gt100") == ["o1"]
    assert await ids(store, "Observation", "code-value-quantity=8480-6$lt100") == []


async def test_composite_components_pair_within_one_component(store: Store) -> None:
    """`component-code-value-quantity`: a blood-pressure panel matches on the value of the very
    component whose code was named, never on its sibling's (both adapters; SQLite drives these
    by the first component's code)."""

    def panel(id: str, systolic: int, diastolic: int) -> dict[str, Any]:
        def part(code: str, value: int) -> dict[str, Any]:
            unit = {"system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
            return {
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, **unit},
            }

        return obs(id, code="85354-9", component=[part("8480-6", systolic), part("8462-4", diastolic)])

    await put(store, panel("high", 160, 95), panel("normal", 118, 76), panel("split", 130, 150))
    query = "component-code-value-quantity"
    assert await ids(store, "Observation", f"{query}={LOINC}|8480-6$gt140") == ["high"]
    assert await ids(store, "Observation", f"{query}=8462-4$gt140") == ["split"]
    assert await ids(store, "Observation", f"{query}=8480-6$gt140,8462-4$lt80") == ["high", "normal"]
    assert await ids(store, "Observation", f"{query}=8480-6$gt140&{query}=8462-4$gt90") == ["high"]
    assert await ids(store, "Observation", f"{query}=8462-4$gt170") == []


async def test_long_or_lists(store: Store) -> None:
    """Thousands of OR values (a large value set, a long id list) still run."""
    await put(store, obs("a", code="c-1500"), obs("b", code="other"))
    codes = ",".join(f"c-{i}" for i in range(3000))
    assert await ids(store, "Observation", f"code={codes}") == ["a"]


async def test_missing(store: Store) -> None:
    await put(store, obs("dated", effectiveDateTime="2026"), obs("undated"))
    assert await ids(store, "Observation", "date:missing=true") == ["undated"]
    assert await ids(store, "Observation", "date:missing=false") == ["dated"]


async def test_or_inside_and(store: Store) -> None:
    """Repeated parameters AND; commas inside one OR."""
    await put(
        store,
        obs("a", code="1", status="final"),
        obs("b", code="2", status="final"),
        obs("c", code="1", status="amended"),
    )
    assert await ids(store, "Observation", "code=1,2&status=final") == ["a", "b"]
    assert await ids(store, "Observation", "code=1,2&code=2,3") == ["b"]


# -- special parameters ---------------------------------------------------------------------------


async def test_id_and_last_updated(store: Store) -> None:
    await put(store, patient("p1"))
    await put(store, patient("p2"))
    assert await ids(store, "Patient", "_id=p2,p3") == ["p2"]
    assert await ids(store, "Patient", "_lastUpdated=ge2026-01-01") == ["p1", "p2"]
    assert await ids(store, "Patient", "_lastUpdated=lt2026-01-01") == []


async def test_meta_tag_security_profile(store: Store) -> None:
    meta = {
        "tag": [{"system": "urn:t", "code": "demo"}],
        "security": [{"system": LABELS, "code": "R"}],
        "profile": ["http://example.org/StructureDefinition/p"],
    }
    await put(store, patient("p1", meta=meta), obs("o1", meta=meta), patient("p2"))
    assert await ids(store, "Patient", "_tag=urn:t|demo") == ["p1"]
    assert await ids(store, "Patient", f"_security={LABELS}|R") == ["p1"]
    assert await ids(store, "Patient", "_profile=http://example.org/StructureDefinition/p") == ["p1"]
    assert await ids(store, None, "_tag=demo") == ["p1", "o1"]


async def test_text_and_content(store: Store) -> None:
    narrative = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">Chest pain at night</div>',
    }
    await put(store, patient("p1", text=narrative), patient("p2", "Painter"))
    assert await ids(store, "Patient", "_text=chest pain") == ["p1"]
    assert await ids(store, "Patient", "_content=painter") == ["p2"]
    assert await ids(store, "Patient", "_content=ann") == ["p1", "p2"]
    assert await ids(store, "Patient", "_content=night") == ["p1"]  # the narrative is content too
    assert await ids(store, "Patient", "_content=xhtml") == []  # its markup is not


async def test_content_words_split_on_punctuation_as_stored(store: Store) -> None:
    """A resource's words are split at ASCII punctuation when stored; a search value is split the
    same way, so `o'neil` and `follow-up` find what holds them."""
    await put(store, patient("p1", "O'Neil", gender="other"), patient("p2", "Neil"))
    assert await ids(store, "Patient", "_content=o'neil") == ["p1"]
    assert await ids(store, "Patient", "_content=O'NEI") == ["p1"]
    assert await ids(store, "Patient", "_content=neil") == ["p1", "p2"]


# -- chains, reverse chains, _list ----------------------------------------------------------------


async def test_chain_two_levels(store: Store) -> None:
    org = {"resourceType": "Organization", "id": "org1", "name": "Leeds Teaching"}
    await put(
        store,
        org,
        patient("p1", "Smith", managingOrganization={"reference": "Organization/org1"}),
        patient("p2", "Jones"),
        obs("o1", "p1"),
        obs("o2", "p2"),
    )
    assert await ids(store, "Observation", "subject:Patient.name=smith") == ["o1"]
    assert await ids(store, "Observation", "patient.organization.name=leeds") == ["o1"]
    assert await ids(store, "Observation", "patient.name=nobody") == []


async def test_has_reverse_chain(store: Store) -> None:
    await put(store, patient("p1"), patient("p2"), obs("o1", "p1", code="A"), obs("o2", "p2", code="B"))
    assert await ids(store, "Patient", "_has:Observation:patient:code=A") == ["p1"]
    assert await ids(store, "Patient", "_has:Observation:subject:code=A,B") == ["p1", "p2"]


async def test_list(store: Store) -> None:
    lst = {"resourceType": "List", "id": "l1", "status": "current", "mode": "working",
           "entry": [{"item": {"reference": "Patient/p2"}}]}  # fmt: skip
    await put(store, patient("p1"), patient("p2"), lst)
    assert await ids(store, "Patient", "_list=l1") == ["p2"]


# -- sorting, paging, totals ----------------------------------------------------------------------


async def test_sort_keys_missing_last_and_stable_paging(store: Store) -> None:
    await put(
        store,
        obs("a", effectiveDateTime="2026-03-01", status="final"),
        obs("b", effectiveDateTime="2026-01-01", status="final"),
        obs("c", status="final"),
        obs("d", effectiveDateTime="2026-03-01", status="amended"),
    )
    assert await ids(store, "Observation", "_sort=date") == ["b", "a", "d", "c"]
    assert await ids(store, "Observation", "_sort=-date") == ["a", "d", "b", "c"]
    assert await ids(store, "Observation", "_sort=-date,status") == ["d", "a", "b", "c"]
    first = await find(store, "Observation", "_sort=date&_count=3")
    second = await find(store, "Observation", "_sort=date&_count=3&_offset=3")
    assert [m.id for m in first.matches] == ["b", "a", "d"] and first.next_offset == 3
    assert [m.id for m in second.matches] == ["c"] and second.next_offset is None
    assert first.total == 4


async def _walk(store: Store, query: str, between: list[list[dict[str, Any]]]) -> list[str]:
    """Every page by cursor, writing the resources of `between[i]` after page i was read."""
    seen: list[str] = []
    page = await find(store, "Observation", query)
    for step in range(50):
        seen += [m.id for m in page.matches]
        if page.next_offset is None:
            return seen
        if step < len(between):
            await put(store, *between[step])
        assert page.cursor is not None
        page = await find(store, "Observation", query, offset=page.next_offset, after=page.cursor)
    raise AssertionError("paging did not end")


@pytest.mark.parametrize(
    "sort", ["", "_sort=-date&", "_sort=date,-status&", "_sort=-_lastUpdated&", "_sort=_id&"]
)
async def test_cursor_pages_neither_repeat_nor_skip_while_others_write(store: Store, sort: str) -> None:
    """Pages continue after the last match sent, whatever sorts in front of it meanwhile: every
    match present from the start is seen exactly once, in order (missing sort keys last)."""
    dates = ["2026-01-05", None, "2026-02-01", "2026-01-05", None, "2026-03-09", "2025-12-31", "2026-02-01"]
    first = [
        obs(f"o{i}", effectiveDateTime=d, status="final" if i % 2 else "amended") if d else obs(f"o{i}")
        for i, d in enumerate(dates)
    ]
    await put(store, *first)
    expected = [m.id for m in (await find(store, "Observation", f"{sort}_count=100")).matches]
    newcomers = [
        [obs("n0", effectiveDateTime="2027-01-01"), obs("a-first", effectiveDateTime="2020-01-01")],
        [obs("n1")],
        [obs("n2", effectiveDateTime="2026-01-05", status="amended")],
    ]
    seen = await _walk(store, f"{sort}_count=3", newcomers)
    old = [i for i in seen if i.startswith("o")]
    assert old == expected  # each once, in the order of the first page's view
    assert len(seen) == len(set(seen))


def _common_and_rare() -> list[dict[str, Any]]:
    """40 Observations whose status and code most share, other types written between them."""
    made: list[dict[str, Any]] = []
    tagged = {"tag": [{"system": "urn:test", "code": "demo"}]}
    for i in range(40):
        quantity = {"value": i * 5, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
        code, status = "8480-6" if i % 3 else "8462-4", "final" if i % 4 else "amended"
        # Dates with ties, periods (a resource's sort value: its earliest start, or its latest end,
        # newest first) and some missing.
        when: dict[str, Any] = {"effectiveDateTime": f"2026-0{1 + i % 7}-1{i % 3}"}
        if i % 6 == 1:
            when = {"effectivePeriod": {"start": f"2025-0{1 + i % 9}-01", "end": f"2027-0{1 + i % 5}-01"}}
        elif i % 9 == 4:
            when = {}
        elif i % 10 == 7:  # two dates far apart: sorted by the first, or newest first by the second
            when = {"effectiveTiming": {"event": [f"2024-0{1 + i % 8}-01", f"2028-0{1 + i % 8}-01"]}}
        made.append(obs(f"o{i:02}", code=code, status=status, valueQuantity=quantity, meta=tagged, **when))
        if i % 5 == 0:
            made.append(patient(f"p{i:02}", meta=tagged))
    return made


@pytest.mark.parametrize(
    ("resource_type", "query"),
    [
        ("Observation", "status=final"),
        ("Observation", "code=8480-6&status=final"),
        ("Observation", "code=8480-6,8462-4"),
        ("Observation", "status=final&value-quantity=gt150"),
        ("Observation", "code=8462-4&status=amended"),  # both common, together rare: the walk gives up
        ("Observation", "status=final&_sort=date"),
        ("Observation", "status=final&_sort=-date"),
        ("Observation", "code=8462-4&status=amended&_sort=-date"),
        ("Observation", "_sort=-date"),
        ("Observation", "value-quantity=gt50&_sort=date"),
        ("Observation", "status=final&_sort=-_lastUpdated"),
        ("Observation", "code=8480-6&status=final&_sort=_lastUpdated"),
        ("Observation", "code=8462-4&status=amended&_sort=-_lastUpdated"),  # the walk gives up
        (None, "_type=Observation,Patient&_tag=urn:test|demo"),
        (None, "_type=Observation,Patient&_tag=urn:test|demo&_lastUpdated=gt2000-01-01"),
    ],
)
async def test_walking_common_criteria_pages_as_reading_them_whole(
    store: Store, monkeypatch: pytest.MonkeyPatch, resource_type: str | None, query: str
) -> None:
    """SQLite walks a type in order instead of reading a driving set of WALK_FROM entries or more
    (lowered here, with FEW and WALK_MOST, so that 40 Observations are many). Page by page, by
    cursor, the same matches come in the same order as when every set is read whole; deleted
    resources never."""
    await put(store, *_common_and_rare())
    await store.write([replace(_op(obs("o05")), expected_version=1, body=None, entries=(), compartments=())])
    by_cursor, by_offset, expected = await _walked_and_whole(store, monkeypatch, resource_type, query)
    assert by_cursor == expected and "o05" not in by_cursor
    assert by_offset == expected
    assert len(expected) >= 4


@pytest.mark.parametrize(
    "query",
    [
        "lifecycle-status=active&_sort=target-date",
        "lifecycle-status=active&_sort=-target-date",
        # Two dates a Goal: the bounds a clause gives (see the test above) must not start the walk.
        "target-date=ge2029-01-01&_sort=target-date",
        "target-date=le2022-06-01&_sort=-target-date",
    ],
)
async def test_walking_a_repeated_date_in_order_meets_each_resource_once(
    store: Store, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """A Goal has one target date per target: sorted by them, it takes its earliest (or, newest first,
    its latest), and a walk by cursor meets its other dates on later pages without repeating it."""
    goals = [
        {
            "resourceType": "Goal",
            "id": f"g{i:02}",
            "lifecycleStatus": "active",
            "description": {"text": "walk further"},
            "subject": {"reference": "Patient/p1"},
            "target": [
                # Every fifth Goal: both dates late (sorted first among those after 2029 that match).
                {"dueDate": f"20{20 + i % 9 + 11 * (i % 5 == 0)}-0{1 + i % 8}-01"},
                {"dueDate": f"20{31 - i % 7}-01-0{1 + i % 5}"},
            ],
        }
        for i in range(30)
    ]
    await put(store, *goals)
    await _walks_page_as_whole(store, monkeypatch, "Goal", query)


@pytest.mark.parametrize(
    "query",
    [
        "status=booked&_sort=date",
        "status=booked&_sort=-date",
        "status=booked&date=ge2026-01-01&_sort=date",
        "status=booked,cancelled&_sort=date",
        "status=booked&service-type=clinic-b&_sort=date",
    ],
)
async def test_walk_whose_matches_come_late_in_its_order_finds_them_past_the_first_entries(
    store: Store, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """Booked appointments come after years of fulfilled ones: sorted by date, the first WALK_MOST
    entries (lowered) hold no match, and SQLite walks on through the entries of the booked ones
    alone. Paged by cursor and by offset, the same matches in the same order as one whole page,
    ties on a date by creation; a deleted one never."""
    appointments = []
    for i in range(36):
        booked = i >= 24 or i == 5
        day = f"2026-0{1 + (i - 24) // 4}-1{i % 3}" if i >= 24 else f"2024-{1 + i % 12:02}-0{1 + i % 9}"
        appointments.append(
            {"resourceType": "Appointment", "id": f"a{i:02}",
             "status": "booked" if booked else ("cancelled" if i % 7 == 3 else "fulfilled"),
             "serviceType": [{"coding": [{"code": "clinic-b" if i % 2 else "clinic-a"}]}],
             "start": f"{day}T09:00:00Z", "end": f"{day}T09:30:00Z",
             "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}]}
        )  # fmt: skip
    await put(store, *reversed(appointments))  # creation order unlike date order
    deleted = next(a for a in appointments if a["id"] == "a30")
    await store.write([replace(_op(deleted), expected_version=1, body=None, entries=(), compartments=())])
    by_cursor, by_offset, expected = await _walked_and_whole(store, monkeypatch, "Appointment", query)
    assert by_cursor == expected == by_offset and "a30" not in expected
    assert len(expected) >= 4


@pytest.mark.parametrize(
    "query",
    [
        "status=final&_sort=-_lastUpdated",
        "status=final&_sort=_lastUpdated",
        "code=8462-4&_sort=-_lastUpdated",
    ],
)
async def test_walking_by_last_updated_keeps_resources_written_together_in_order(
    store: Store, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """Resources written by one transaction share their lastUpdated: sorted by it, they come in
    creation order, and a walk (thresholds lowered) never cuts such a group between pages or at its
    edge (groups of 12 here: larger than a page, and WALK_MOST lands inside them)."""
    written = _common_and_rare()
    moment = datetime(2026, 3, 1, tzinfo=UTC)
    await store.write(
        [replace(_op(r), last_updated=moment + timedelta(seconds=i // 12)) for i, r in enumerate(written)]
    )
    await _walks_page_as_whole(store, monkeypatch, "Observation", query)


@pytest.mark.parametrize(
    "query",
    [
        "_sort=family",
        "_sort=-family",
        "gender=female&_sort=family",
        "gender=female&_sort=-given",
        "name=b&_sort=family",
    ],
)
async def test_walking_a_string_in_order_pages_as_reading_it_whole(
    store: Store, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """Sorted by a string, a walk reads its entries in that order: a Patient with two names sorts by
    its first (or, descending, its last) family name, ties by creation, those with none last. By
    cursor and by offset, with the thresholds lowered, as when every match is read and sorted."""
    families = ["Brown", "adams", "Évans", "brown", "Clark", "Adams"]
    patients = []
    for i in range(30):
        names = [{"family": families[i % 6], "given": [f"G{i % 7}"]}]
        if i % 4 == 1:
            names.append({"family": families[(i + 2) % 6], "given": ["Old"]})
        patients.append(
            {"resourceType": "Patient", "id": f"p{i:02}", "gender": "female" if i % 3 else "male",
             **({"name": names} if i % 9 != 5 else {})}
        )  # fmt: skip
    await put(store, *patients)
    await _walks_page_as_whole(store, monkeypatch, "Patient", query)


def _encounters(open_end: bool) -> list[dict[str, Any]]:
    """Encounters whose periods (one each) last from an hour to a week, some across 2026-06-01, and
    with `open_end` one still going on (no end: then no width bounds the parameter's entries)."""
    made = []
    for i in range(36):
        start = datetime(2026, 5, 10, tzinfo=UTC) + timedelta(days=i, hours=i % 5)
        end = start + timedelta(hours=1 + (i % 4) * 56)
        period = (
            {"start": start.isoformat()}
            if open_end and i == 7
            else {"start": start.isoformat(), "end": end.isoformat()}
        )
        made.append({"resourceType": "Encounter", "id": f"e{i:02}", "status": "finished",
                     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                     "period": period})  # fmt: skip
    return made


@pytest.mark.parametrize("open_end", [False, True])
@pytest.mark.parametrize(
    "query",
    [
        "date=ge2026-06-01&_sort=date",
        "date=gt2026-06-01&_sort=date",
        "date=ap2026-06&_sort=date",
        "date=sa2026-06-01&_sort=date",
        "date=2026-06&_sort=date",
        "date=ge2026-05-20&date=lt2026-06-05&_sort=date",
        "date=ge2026-05-20&date=lt2026-06-05",
        "date=ge2026-05-12,ge2026-06-10&date=le2026-06-12&_sort=date",
        "date=le2026-06-03&_sort=-date",
        "date=lt2026-06-03&_sort=-date",
        "date=eb2026-06-03&_sort=-date",
        "date=ge2026-05-20&date=le2026-06-05&_sort=-date",
    ],
)
async def test_date_bounds_narrow_walks_and_windows_without_losing_matches(
    store: Store, monkeypatch: pytest.MonkeyPatch, open_end: bool, query: str
) -> None:
    """SQLite starts a date walk, and narrows a date criterion's driving set, at the bounds that all
    the clauses on the parameter imply, for a parameter whose resources have one entry each, given
    its widest entry (a Period across the bound starts before it). Paged by cursor and by offset,
    with the walking thresholds lowered, the matches are those found with the bounds unused."""
    from fhir_server.storage import sqlite_index

    await put(store, *_encounters(open_end))
    with monkeypatch.context() as unbounded:
        unbounded.setattr(sqlite_index, "_date_bounds", lambda *args: None)
        expected = await ids(store, "Encounter", f"{query}&_count=100")
    by_cursor, by_offset, whole = await _walked_and_whole(store, monkeypatch, "Encounter", query)
    assert by_cursor == expected == by_offset == whole
    assert len(expected) >= 4 and len(expected) < 36


async def _walks_page_as_whole(
    store: Store, monkeypatch: pytest.MonkeyPatch, resource_type: str, query: str
) -> None:
    """Paged by cursor and by offset with the walking thresholds lowered, as one whole page."""
    by_cursor, by_offset, expected = await _walked_and_whole(store, monkeypatch, resource_type, query)
    assert by_cursor == expected == by_offset and len(expected) >= 4


async def _walked_and_whole(
    store: Store, monkeypatch: pytest.MonkeyPatch, resource_type: str | None, query: str, **changes: Any
) -> tuple[list[str], list[str], list[str]]:
    """Ids page by page (3 a page) with SQLite's walking thresholds lowered, by cursor and by
    offset (which walks up to WALK_OFFSET_MOST, lowered too, so that later pages read the driving
    set instead), and the ids of one whole page with them as shipped."""
    from fhir_server.storage import sqlite_index

    expected = await ids(store, resource_type, f"{query}&_count=100", **changes)
    monkeypatch.setattr(sqlite_index, "FEW", 2)
    monkeypatch.setattr(sqlite_index, "WALK_FROM", 4)
    monkeypatch.setattr(sqlite_index, "WALK_MOST", 6)
    monkeypatch.setattr(sqlite_index, "WALK_OFFSET_MOST", 10)
    return (
        await _paged(store, resource_type, query, len(expected), cursor=True, **changes),
        await _paged(store, resource_type, query, len(expected), cursor=False, **changes),
        expected,
    )


async def _paged(
    store: Store, resource_type: str | None, query: str, most: int, *, cursor: bool, **changes: Any
) -> list[str]:
    seen: list[str] = []
    page = await find(store, resource_type, f"{query}&_count=3", **changes)
    for _ in range(most + 2):  # a page that repeats itself must not loop forever
        seen += [m.id for m in page.matches]
        if page.next_offset is None:
            return seen
        after = page.cursor if cursor else None
        page = await find(
            store, resource_type, f"{query}&_count=3", offset=page.next_offset, after=after, **changes
        )
    raise AssertionError(f"paging did not end; seen so far: {seen}")


async def test_a_cursor_from_another_sort_is_refused(store: Store) -> None:
    await put(store, *(obs(f"o{i}", effectiveDateTime=f"2026-01-0{i + 1}") for i in range(4)))
    page = await find(store, "Observation", "_sort=date&_count=2")
    assert page.cursor is not None
    with pytest.raises(BadRequest):
        await find(store, "Observation", "_sort=date,status&_count=2", offset=2, after=page.cursor)


async def test_total_modes(store: Store) -> None:
    await put(store, *(patient(f"p{i}") for i in range(5)))
    assert (await find(store, "Patient", "_count=2")).total == 5
    assert (await find(store, "Patient", "_count=2&_total=none")).total is None
    counted = await find(store, "Patient", "_summary=count")
    assert counted.total == 5 and counted.matches == []


async def test_an_unasked_total_is_counted_only_up_to_the_cap(store: Store) -> None:
    """`total="bounded"` (no `_total` given) counts up to `total_cap` matches and reports no total
    past it; `_total=accurate` counts them all; a last page tells its total without counting."""
    await put(store, *(patient(f"p{i}") for i in range(6)), patient("q", "Jones"))
    assert (await find(store, "Patient", "name=smi&_count=2", total_cap=5)).total is None
    assert (await find(store, "Patient", "name=smi&_count=2", total_cap=6)).total == 6
    assert (await find(store, "Patient", "name=smi&_count=2&_total=accurate", total_cap=5)).total == 6
    assert (await find(store, "Patient", "name=smi&_count=10", total_cap=5)).total == 6
    assert (await find(store, "Patient", "_count=2", total_cap=6)).total is None  # 7 Patients
    assert (await find(store, "Patient", "_count=2", total_cap=7)).total == 7
    assert (await find(store, "Patient", "_count=2&_total=estimate", total_cap=6)).total == 7


async def test_a_search_that_walks_its_criteria_reports_no_unasked_total(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite walks the type when every criterion's driving set is large (thresholds lowered here, so
    that 6 are many): then it reports no total unless one is asked for, as counting would probe the
    matches one by one. `_total=accurate` counts; a walk with no criteria (the type's own) counts
    too, cheaply, and so does `_count=0`, whose answer is the total alone. The other adapters count
    as ever."""
    from fhir_server.storage import sqlite_index

    monkeypatch.setattr(sqlite_index, "FEW", 2)
    monkeypatch.setattr(sqlite_index, "WALK_FROM", 4)
    await put(
        store, *(patient(f"p{i}") for i in range(6)), *(obs(f"o{i}", f"p{i}", code="A") for i in range(6))
    )
    walked = await find(store, "Patient", "_has:Observation:patient:code=A&_count=2")
    asked = await find(store, "Patient", "_has:Observation:patient:code=A&_count=2&_total=accurate")
    whole_type = await find(store, "Observation", "_sort=date&_count=2")
    no_page = await find(store, "Patient", "_has:Observation:patient:code=A&_count=0")  # the total is all
    assert len(walked.matches) == 2 and walked.next_offset == 2
    assert asked.total == 6 and whole_type.total == 6 and no_page.total == 6
    assert walked.total == (None if type(store).__name__ == "SqliteStore" else 6)


async def test_deleted_and_replaced_resources(store: Store) -> None:
    """A tombstone matches nothing; an update's old values no longer match."""
    await put(store, patient("p1", "Smith"), patient("p2", "Smith"))
    await store.write([_op(patient("p1", "Jones"), expected=1)])
    await store.write(
        [replace(_op(patient("p2")), expected_version=1, body=None, entries=(), compartments=())]
    )
    assert await ids(store, "Patient", "name=smith") == []
    assert await ids(store, "Patient", "name=jones") == ["p1"]


async def test_total_counts_each_live_match_once(store: Store) -> None:
    """A total counted past the page: a resource matching through two values counts once, a
    deleted or changed one not at all, another type's entries never."""
    twice = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Smith", "given": ["Smithy"]}]}
    await put(store, twice, patient("p2", "Smith"), patient("p3", "Smith"), patient("p4", "Smith"))
    await put(store, {"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Smith"}]})
    await store.write([_op(patient("p3", "Jones"), expected=1)])
    await store.write(
        [replace(_op(patient("p4")), expected_version=1, body=None, entries=(), compartments=())]
    )
    page = await find(store, "Patient", "name=smi&_count=1&_total=accurate")
    assert len(page.matches) == 1 and page.next_offset == 1
    assert page.total == 2
    assert (await find(store, "Patient", "name=smi,jon&_count=1&_total=accurate")).total == 3


# -- includes -------------------------------------------------------------------------------------


async def test_include_revinclude_and_iterate(store: Store) -> None:
    org = {"resourceType": "Organization", "id": "org1", "name": "Trust"}
    await put(
        store,
        org,
        patient("p1", managingOrganization={"reference": "Organization/org1"}),
        obs("o1", "p1"),
        obs("o2", "p1"),
    )
    page = await find(store, "Observation", "_id=o1&_include=Observation:patient")
    assert [m.id for m in page.matches] == ["o1"] and [i.id for i in page.included] == ["p1"]
    page = await find(
        store, "Observation", "_id=o1&_include=Observation:patient&_include:iterate=Patient:organization"
    )
    assert [i.id for i in page.included] == ["p1", "org1"]
    page = await find(store, "Patient", "_id=p1&_revinclude=Observation:subject")
    assert sorted(i.id for i in page.included) == ["o1", "o2"]
    page = await find(store, "Observation", "_id=o2&_include=*")
    assert [i.id for i in page.included] == ["p1"]


# -- compartments and system level ----------------------------------------------------------------


async def test_compartment_search(store: Store) -> None:
    await put(store, patient("p1"), patient("p2"), obs("o1", "p1"), obs("o2", "p2"))
    assert await ids(store, "Observation", "", compartment="Patient/p1") == ["o1"]
    assert await ids(store, None, "", compartment="Patient/p1") == ["p1", "o1"]


async def test_system_level_with_and_without_type(store: Store) -> None:
    await put(store, patient("p1"), obs("o1"))
    assert await ids(store, None, "") == ["p1", "o1"]
    assert await ids(store, None, "_type=Observation") == ["o1"]
    assert await ids(store, None, "_id=o1") == ["o1"]


# -- access narrowing -----------------------------------------------------------------------------


def _labelled(resource: dict[str, Any], label: str) -> dict[str, Any]:
    return {**resource, "meta": {"security": [{"system": LABELS, "code": label}]}}


async def _two_patients(store: Store) -> None:
    await put(
        store,
        patient("p1"),
        patient("p2"),
        obs("o1", "p1"),
        _labelled(obs("o2", "p1"), "R"),
        obs("o3", "p2"),
    )


async def test_access_compartments_narrow_matches_and_totals(store: Store) -> None:
    await _two_patients(store)
    mine = AccessFilter(compartments=frozenset({"Patient/p1"}))
    page = await find(store, "Observation", "_count=1", access=mine)
    assert page.total == 2 and [m.id for m in page.matches] == ["o1"]
    assert await ids(store, "Patient", "", access=mine) == ["p1"]


async def test_access_labels(store: Store) -> None:
    await _two_patients(store)
    normal = AccessFilter(allowed_labels=frozenset({(LABELS, "N")}))
    assert await ids(store, "Observation", "", access=normal) == ["o1", "o3"]
    restricted = AccessFilter(allowed_labels=frozenset({(LABELS, "R")}), allow_unlabeled=False)
    assert await ids(store, "Observation", "", access=restricted) == ["o2"]


@pytest.mark.parametrize("query", ["code=8480-6&_sort=-date", "code=8480-6&_sort=date", "_sort=-date"])
@pytest.mark.parametrize("reach", ["labels", "compartments", "compartment search"])
async def test_walks_in_date_order_keep_to_the_callers_reach(
    store: Store, monkeypatch: pytest.MonkeyPatch, query: str, reach: str
) -> None:
    """Sorted by date and walked (thresholds lowered), a caller limited to normal labels, to one
    patient, or searching one patient's compartment pages through the same matches as one whole
    page under the same limits, and never meets a restricted or another patient's reading."""
    made = []
    for i in range(30):
        reading = obs(
            f"o{i:02}", "p1" if i % 3 else "p2", effectiveDateTime=f"2026-0{1 + i % 9}-{10 + i % 17}"
        )
        made.append(_labelled(reading, "R") if i % 4 == 1 else reading)
    await put(store, patient("p1"), patient("p2"), *made)
    changes: dict[str, Any] = {
        "labels": {"access": AccessFilter(allowed_labels=frozenset({(LABELS, "N")}))},
        "compartments": {"access": AccessFilter(compartments=frozenset({"Patient/p1"}))},
        "compartment search": {"compartment": "Patient/p1"},
    }[reach]
    by_cursor, by_offset, expected = await _walked_and_whole(
        store, monkeypatch, "Observation", query, **changes
    )
    assert by_cursor == expected == by_offset and len(expected) >= 4
    outside = {r["id"] for i, r in enumerate(made) if (i % 4 == 1 if reach == "labels" else i % 3 == 0)}
    assert not outside & set(expected)


NHS = "https://fhir.nhs.uk/Id/nhs-number"


def _numbered(id: str, number: str) -> dict[str, Any]:
    return patient(id, identifier=[{"system": NHS, "value": number}])


async def _numbered_patients(store: Store, monkeypatch: pytest.MonkeyPatch, *others: dict[str, Any]) -> str:
    """Patients a1-a3 with NHS numbers 1-3 (and `others`), with SQLite's sizing thresholds lowered
    so that four identifiers reach WALK_FROM; the NHS number system."""
    from fhir_server.storage import sqlite_index

    monkeypatch.setattr(sqlite_index, "FEW", 2)
    monkeypatch.setattr(sqlite_index, "WALK_FROM", 4)
    await put(store, *[_numbered(f"a{n}", str(n)) for n in (1, 2, 3)], *others)
    return NHS


async def test_whether_a_restricted_caller_gets_a_total_does_not_tell_what_they_cannot_see(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller whose access narrows the search pads a criterion with values they can see up to the
    point where SQLite stops reading the criterion's entries and walks the type (WALK_FROM, lowered
    here). Whether one more value is held by a resource out of their reach then decided whether the
    walk ran, and a walked page gave no total unasked: its presence told them whether an NHS number
    is registered elsewhere. Both answers must now be the same."""
    nhs = await _numbered_patients(store, monkeypatch, _labelled(_numbered("b9", "9"), "R"))
    normal = AccessFilter(allowed_labels=frozenset({(LABELS, "N")}))
    answers = []
    for other in ("9", "8"):  # held by a patient out of reach; held by nobody
        values = ",".join(f"{nhs}|{n}" for n in ("1", "2", "3", other))
        page = await find(store, "Patient", f"identifier={values}&_count=2", access=normal)
        answers.append(([m.id for m in page.matches], page.total, page.next_offset))
    assert answers[0] == answers[1]
    assert answers[0][0] == ["a1", "a2"] and answers[0][2] == 2
    # Asked for, the total is counted within reach whatever lies beyond it; and where no size was
    # weighed (one criterion, an order no walk serves), the unasked total is counted within reach.
    for other in ("9", "8"):
        values = ",".join(f"{nhs}|{n}" for n in ("1", "2", "3", other))
        page = await find(store, "Patient", f"identifier={values}&_count=2&_total=accurate", access=normal)
        assert page.total == 3
        page = await find(store, "Patient", f"identifier={values}&_count=2&_sort=gender", access=normal)
        assert page.total == 3 and len(page.matches) == 2


async def test_an_access_filter_that_narrows_nothing_searches_as_unrestricted(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend client with `system/*.rs` carries an AccessFilter with every field open. It is
    searched as no access at all: an unasked total left out for callers that access narrows stays."""
    nhs = await _numbered_patients(store, monkeypatch)
    values = ",".join(f"{nhs}|{n}" for n in (1, 2, 3))
    params = [("identifier", values), ("_count", "2")]
    for access in (None, AccessFilter()):
        ctx = RequestContext(store, "http://testserver/fhir", access=access)
        body = orjson.loads(await search_bundle(ctx, "Patient", params))
        assert body["total"] == 3 and len(body["entry"]) == 2


async def test_access_types_and_rules(store: Store) -> None:
    await _two_patients(store)
    only_obs = AccessFilter(types=frozenset({"Observation"}))
    assert await ids(store, None, "", access=only_obs) == ["o1", "o2", "o3"]
    rule = TypeRule("Observation", ((Clause("code", "token", (TokenValue(None, "8480-6"),)),),))
    assert await ids(store, "Observation", "", access=AccessFilter(extra=(rule,))) == ["o1", "o2", "o3"]
    never = TypeRule("Observation", ((Clause("code", "token", (TokenValue(None, "nope"),)),),))
    assert await ids(store, "Observation", "", access=AccessFilter(extra=(never,))) == []
    assert await ids(store, "Patient", "", access=AccessFilter(extra=(never,))) == ["p1", "p2"]


async def test_access_applies_to_includes_chains_and_has(store: Store) -> None:
    await _two_patients(store)
    no_patients = AccessFilter(types=frozenset({"Observation"}))
    page = await find(store, "Observation", "_id=o1&_include=Observation:patient", access=no_patients)
    assert [m.id for m in page.matches] == ["o1"] and page.included == []
    assert await ids(store, "Observation", "patient.name=smith", access=no_patients) == []
    normal = AccessFilter(allowed_labels=frozenset({(LABELS, "N")}))
    page = await find(store, "Patient", "_id=p1&_revinclude=Observation:subject", access=normal)
    assert [i.id for i in page.included] == ["o1"]
    assert await ids(store, "Patient", "_has:Observation:subject:_id=o2") == ["p1"]
    assert await ids(store, "Patient", "_has:Observation:subject:_id=o2", access=normal) == []


async def test_query_values_are_plain_data() -> None:
    """A SearchQuery is a comparable value: parsing the same string twice gives equal queries."""
    first = parse_search("Observation", [("code", "a|b"), ("date", "ge2026")]).query
    second = parse_search("Observation", [("code", "a|b"), ("date", "ge2026")]).query
    assert first == second and isinstance(first, SearchQuery)


# -- conditional create: the store re-checks the criteria inside the write -----------------------


def _unless(resource_type: str, query: str) -> SearchQuery:
    params = [tuple(p.split("=", 1)) for p in query.split("&")]
    return replace(parse_search(resource_type, params).query, count=1, total="none")  # type: ignore[arg-type]


async def test_a_guarded_write_commits_while_its_criteria_match_nothing(store: Store) -> None:
    await put(store, patient("p1", identifier=[{"system": "urn:x", "value": "1"}]))
    op = replace(
        _op(patient("p2", identifier=[{"system": "urn:x", "value": "2"}])),
        unless_match=_unless("Patient", "identifier=urn:x|2"),
    )
    [written] = await store.write([op])
    assert written.version_id == 1


async def test_a_guarded_write_whose_criteria_match_now_writes_nothing(store: Store) -> None:
    """The race a conditional create loses: someone created a match after it searched."""
    await put(store, patient("p1", identifier=[{"system": "urn:x", "value": "1"}]))
    guarded = replace(
        _op(patient("p2", identifier=[{"system": "urn:x", "value": "1"}])),
        unless_match=_unless("Patient", "identifier=urn:x|1"),
    )
    with pytest.raises(ConditionConflict):
        await store.write([_op(patient("p3")), guarded])
    assert await store.read("Patient", "p2") is None
    assert await store.read("Patient", "p3") is None  # the whole write failed


async def test_guards_in_one_write_are_judged_on_the_state_before_it(store: Store) -> None:
    """Two conditional creates with the same criteria in one transaction: neither sees the other
    (the spec processes a transaction's conditions before its writes); both are written."""
    ops = [
        replace(
            _op(patient(pid, identifier=[{"system": "urn:x", "value": "9"}])),
            unless_match=_unless("Patient", "identifier=urn:x|9"),
        )
        for pid in ("p1", "p2")
    ]
    assert [s.id for s in await store.write(ops)] == ["p1", "p2"]
