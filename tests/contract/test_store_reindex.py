"""Reindexing through the storage port, run against every adapter: a store whose entries an older
extraction made (here: none at all) gets them made again from the stored bodies, with no new
versions, and records the current INDEX_VERSION."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from fhir_server.indexing.entries import INDEX_VERSION
from fhir_server.rest.writes import plan_put, stored_index
from fhir_server.search.parse import parse_search
from fhir_server.storage.port import Store, WriteOp

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def glucose(id: str, value: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"text": "glucose"},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": orjson.Fragment(value), "unit": "mmol/L"},
    }


def unindexed(op: WriteOp) -> WriteOp:
    """The op as an older server might have written it: its body, but not all its entries."""
    return replace(op, entries=(), compartments=())


async def ids(store: Store, resource_type: str, query: str) -> list[str]:
    params = [tuple(p.split("=", 1)) for p in query.split("&")]
    page = await store.search(parse_search(resource_type, params).query)  # type: ignore[arg-type]
    return [m.id for m in page.matches]


async def test_reindex_makes_the_entries_again_from_the_stored_bodies(store: Store) -> None:
    """Searches by value, by compartment and by reference find what the older entries missed;
    deleted resources stay unfound; versions are untouched; the store records the new version."""
    assert await store.index_version() == INDEX_VERSION  # an empty store starts current
    ops = [plan_put(glucose(f"o{i}", v), f"o{i}", 0, NOW) for i, v in enumerate(["6.3", "7", "8.25"])]
    patient = plan_put({"resourceType": "Patient", "id": "p1"}, "p1", 0, NOW)
    await store.write([unindexed(op) for op in [*ops, patient]])
    await store.write([WriteOp("Observation", "o2", 1, NOW, None, method="DELETE")])
    assert await ids(store, "Observation", "value-quantity=gt6") == []
    assert await ids(store, "Observation", "subject=Patient/p1") == []

    done = await store.reindex(stored_index)

    assert done == 3  # o0, o1 and p1: a deleted resource has nothing to index
    assert await ids(store, "Observation", "value-quantity=gt6") == ["o0", "o1"]
    assert await ids(store, "Observation", "subject=Patient/p1") == ["o0", "o1"]
    compartment = replace(parse_search("Observation", []).query, compartment="Patient/p1")
    assert [m.id for m in (await store.search(compartment)).matches] == ["o0", "o1"]
    read = await store.read("Observation", "o0")
    assert read is not None and read.version_id == 1
    assert await store.index_version() == INDEX_VERSION


async def test_reindex_reports_progress_in_batches(store: Store) -> None:
    ops = [plan_put(glucose(f"o{i}", "5.5"), f"o{i}", 0, NOW) for i in range(5)]
    await store.write(ops)
    seen: list[int] = []
    assert await store.reindex(stored_index, progress=seen.append) == 5
    assert sum(seen) == 5
    assert await ids(store, "Observation", "value-quantity=5.5") == [f"o{i}" for i in range(5)]


async def test_reindex_treats_references_to_the_own_base_as_relative(store: Store) -> None:
    """A body stored before own-base references were made relative (`http://.../fhir/Patient/p1`)
    is indexed as a write would index it today: its subject and compartment are Patient/p1."""
    base = "http://fhir.example.org/fhir"
    absolute = {**glucose("o1", "6.3"), "subject": {"reference": f"{base}/Patient/p1"}}
    op = WriteOp("Observation", "o1", 0, NOW, orjson.dumps(absolute), (), ())
    await store.write([op])
    assert await ids(store, "Observation", "subject=Patient/p1") == []
    await store.reindex(partial(stored_index, own_base=base))
    assert await ids(store, "Observation", "subject=Patient/p1") == ["o1"]
    compartment = replace(parse_search("Observation", []).query, compartment="Patient/p1")
    assert [m.id for m in (await store.search(compartment)).matches] == ["o1"]
