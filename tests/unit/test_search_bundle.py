"""Searchset Bundle assembly, subsetting and the SQLite index's parameter ids (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from fhir_server.indexing.registry import get_registry
from fhir_server.search.bundle import SUBSETTED, Links, searchset, subset
from fhir_server.search.parse import Ignored
from fhir_server.search.query import SearchPage
from fhir_server.storage.port import StoredResource
from fhir_server.storage.sqlite_index import pid

BASE = "http://x/fhir"
BODY = (
    b'{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"t"},'
    b'"valueQuantity":{"value":1}}'
)


def stored(body: bytes = BODY, id: str = "o1", resource_type: str = "Observation") -> StoredResource:
    return StoredResource(resource_type, id, 1, datetime(2026, 1, 1, tzinfo=UTC), False, body)


def links(offset: int = 0, count: int = 2, given: bool = True) -> Links:
    return Links(BASE, "Observation", (("code", "a,b"),), count, offset, given)


def test_bundle_splices_stored_bytes_and_marks_modes() -> None:
    page = SearchPage([stored()], [stored(b'{"resourceType":"Patient","id":"p"}', "p", "Patient")], 7, None)
    raw = searchset(page, links())
    assert BODY in raw  # the stored bytes as they were, not re-serialised
    bundle = orjson.loads(raw)
    assert bundle["type"] == "searchset" and bundle["total"] == 7
    assert [(e["fullUrl"], e["search"]["mode"]) for e in bundle["entry"]] == [
        (f"{BASE}/Observation/o1", "match"),
        (f"{BASE}/Patient/p", "include"),
    ]


def test_links_reproduce_the_query_and_page() -> None:
    bundle = orjson.loads(searchset(SearchPage([stored()], [], None, 4), links(offset=2)))
    urls = {link["relation"]: link["url"] for link in bundle["link"]}
    assert urls == {
        "self": f"{BASE}/Observation?code=a%2Cb&_count=2&_offset=2",
        "next": f"{BASE}/Observation?code=a%2Cb&_count=2&_offset=4",
        "previous": f"{BASE}/Observation?code=a%2Cb&_count=2",
    }
    assert "total" not in bundle


def test_empty_bundle_has_no_entry_array() -> None:
    assert "entry" not in orjson.loads(searchset(SearchPage([], [], 0, None), links()))


def test_lenient_outcome_entry_lists_ignored_parameters() -> None:
    raw = searchset(SearchPage([], [], 0, None), links(), ignored=[Ignored("foo", "1", "Unknown 'foo'")])
    (entry,) = orjson.loads(raw)["entry"]
    assert entry["search"]["mode"] == "outcome"
    assert entry["resource"]["issue"][0]["expression"] == ["foo"]


def test_summary_true_keeps_summary_elements_and_tags_subsetted() -> None:
    resource = {**orjson.loads(BODY), "text": {"div": "x"}, "note": [{"text": "n"}]}
    cut = subset(resource, "true", None)
    assert set(cut) == {"resourceType", "id", "status", "code", "valueQuantity", "meta"}
    assert cut["meta"]["tag"] == [SUBSETTED]


def test_summary_data_drops_only_the_narrative() -> None:
    resource = {**orjson.loads(BODY), "text": {"div": "x"}}
    assert set(subset(resource, "data", None)) == {
        "resourceType",
        "id",
        "status",
        "code",
        "valueQuantity",
        "meta",
    }


def test_elements_keeps_named_and_mandatory_elements() -> None:
    cut = subset(orjson.loads(BODY), None, ("value[x]",))
    assert set(cut) == {"resourceType", "id", "meta", "status", "code", "valueQuantity"}


def test_parameter_ids_do_not_collide() -> None:
    """Every (type, code) the registry knows maps to its own 31-bit id."""
    registry = get_registry()
    keys = {
        ("*" if code.startswith("_") else t, code)
        for t in registry.resource_types()
        for code in registry.params_for(t)
    }
    ids = {pid(t, code) for t, code in keys}
    assert len(ids) == len(keys)
    assert all(0 <= i < 2**31 for i in ids)
