"""The Mongo adapter's own behaviour on the stand-in: layout, indexes, the duplicate-key guard, keyset
paging, and the stand-in's transaction (what the contract suite relies on it for)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from fhir_server.errors import VersionConflict
from fhir_server.indexing.entries import DateEntry, ReferenceEntry
from fhir_server.instants import to_micros
from fhir_server.search.query import SearchQuery, SortKey
from fhir_server.storage.mongo import MongoStore, history_filter
from fhir_server.storage.mongo_docs import INDEXES, partition_key
from fhir_server.storage.mongo_standin import StandInClient
from fhir_server.storage.port import HistoryQuery, WriteOp

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
async def store() -> AsyncIterator[MongoStore]:
    adapter = MongoStore.in_memory_stand_in(database="unit")
    await adapter.open()
    yield adapter
    await adapter.drop_database()
    await adapter.close()


def put(rtype: str, rid: str, expected: int = 0, **extra: object) -> WriteOp:
    body = orjson.dumps({"resourceType": rtype, "id": rid})
    return WriteOp(rtype, rid, expected, T0, body, **extra)  # type: ignore[arg-type]


async def test_open_creates_every_index_once_and_again_idempotently(store: MongoStore) -> None:
    await store.open()  # a second open (e.g. another worker) must not fail
    names = set(await store.resources.index_information())
    wanted = {options["name"] for collection, _, options in INDEXES if collection == "resources"}
    assert wanted <= names


async def test_resource_document_layout(store: MongoStore) -> None:
    op = put("Observation", "o", entries=[DateEntry("date", 1, 2)], compartments=("Patient/p",))
    await store.write([op])
    doc = await store.resources.find_one({"_id": "Observation/o"})
    assert doc is not None
    assert (doc["type"], doc["id"], doc["version"], doc["deleted"], doc["pk"]) == (
        "Observation",
        "o",
        1,
        False,
        "Patient/p",
    )
    assert doc["ix"] == [{"p": "date", "k": "d", "lo": 1, "hi": 2}]
    assert doc["sk"] == {"date": {"h": 1, "a": 1, "d": 2}}
    assert doc["compartments"] == ["Patient/p"]


async def test_a_patient_is_in_its_own_compartment(store: MongoStore) -> None:
    await store.write([put("Patient", "p")])
    doc = await store.resources.find_one({"_id": "Patient/p"})
    assert doc is not None and doc["compartments"] == ["Patient/p"] and doc["pk"] == "Patient/p"


async def test_a_tombstone_drops_its_index_but_keeps_its_partition(store: MongoStore) -> None:
    await store.write(
        [put("Observation", "o", entries=[DateEntry("date", 1, 2)], compartments=("Patient/p",))]
    )
    await store.write([WriteOp("Observation", "o", 1, T0 + timedelta(seconds=1), None, method="DELETE")])
    doc = await store.resources.find_one({"_id": "Observation/o"})
    assert doc is not None
    assert (doc["deleted"], doc["ix"], doc["compartments"], doc["pk"], doc["body"]) == (
        True,
        [],
        [],
        "Patient/p",
        b"",
    )
    assert (await store.search(SearchQuery(("Observation",)))).matches == []


async def test_creation_order_survives_updates(store: MongoStore) -> None:
    await store.write([put("Patient", "a")])
    await store.write([put("Patient", "b")])
    await store.write([put("Patient", "a", 1)])
    page = await store.search(SearchQuery(("Patient",)))
    assert [m.id for m in page.matches] == ["a", "b"]


async def test_a_duplicate_version_in_history_is_a_version_conflict_and_rolls_back(store: MongoStore) -> None:
    """The unique {res, version} index is the guard where `_id` uniqueness is only per shard."""
    await store.versions.insert_one({"res": "Patient/x", "version": 1, "type": "Patient", "id": "x"})
    with pytest.raises(VersionConflict):
        await store.write([put("Patient", "y"), put("Patient", "x")])
    assert await store.read("Patient", "x") is None
    assert await store.read("Patient", "y") is None


async def test_next_pages_resume_after_the_remembered_key(store: MongoStore) -> None:
    await store.write([put("Patient", f"p{i}", entries=[DateEntry("birthdate", i, i + 1)]) for i in range(5)])
    query = SearchQuery(("Patient",), sort=(SortKey("birthdate", "date", descending=True),), count=2)
    first = await store.search(query)
    assert first.next_offset == 2
    # A resource written between pages does not shift the next page (keyset, not skip).
    await store.write([put("Patient", "late", entries=[DateEntry("birthdate", 100, 101)])])
    second = await store.search(SearchQuery(query.resource_types, sort=query.sort, count=2, offset=2))
    assert [m.id for m in first.matches + second.matches] == ["p4", "p3", "p2", "p1"]


async def test_history_levels_filter() -> None:
    assert history_filter(HistoryQuery("Patient", "a")) == {"res": "Patient/a"}
    assert history_filter(HistoryQuery("Patient", since=T0)) == {
        "type": "Patient",
        "last_updated": {"$gte": to_micros(T0)},
    }
    assert history_filter(HistoryQuery(type_filter=frozenset({"B", "A"}))) == {
        "$and": [{"type": {"$in": ["A", "B"]}}]
    }


def test_partition_key_follows_the_first_patient_compartment() -> None:
    assert partition_key(put("Observation", "o", compartments=("Patient/1", "Patient/2"))) == "Patient/1"
    assert partition_key(put("Practitioner", "d")) == "Practitioner/d"
    assert partition_key(WriteOp("Observation", "o", 1, T0, None), previous="Patient/1") == "Patient/1"


async def test_stand_in_transaction_undoes_every_write_of_a_failed_callback() -> None:
    client = StandInClient("t")
    things = client.get_database().get_collection("things")
    await things.insert_one({"_id": 1, "v": "before"})

    async def half_then_fail(session: object) -> None:
        await things.replace_one({"_id": 1}, {"_id": 1, "v": "after"}, session=session)  # type: ignore[arg-type]
        await things.insert_one({"_id": 2}, session=session)  # type: ignore[arg-type]
        raise RuntimeError("boom")

    async with client.start_session() as session:
        with pytest.raises(RuntimeError):
            await session.with_transaction(half_then_fail)
    assert await things.find({}).to_list() == [{"_id": 1, "v": "before"}]


async def test_references_are_searchable_after_update_removes_them(store: MongoStore) -> None:
    await store.write([put("Observation", "o", entries=[ReferenceEntry("subject", "Patient", "1")])])
    await store.write([put("Observation", "o", 1)])
    doc = await store.resources.find_one({"_id": "Observation/o"})
    assert doc is not None and doc["ix"] == [] and doc["version"] == 2
