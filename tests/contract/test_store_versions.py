"""The storage port's write/read/history contract, run against every adapter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from fhir_server.errors import VersionConflict
from fhir_server.storage.port import HistoryQuery, Store, WriteOp

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def put(rtype: str, rid: str, expected: int, at: datetime, **body: object) -> WriteOp:
    resource = {"resourceType": rtype, "id": rid, **body}
    return WriteOp(rtype, rid, expected, at, orjson.dumps(resource))


def delete(rtype: str, rid: str, expected: int, at: datetime) -> WriteOp:
    return WriteOp(rtype, rid, expected, at, None, method="DELETE")


async def test_first_write_is_version_one_and_reads_back_bytes(store: Store) -> None:
    [stored] = await store.write([put("Patient", "a", 0, T0, active=True)])
    assert stored.version_id == 1
    read = await store.read("Patient", "a")
    assert read is not None
    assert read.body == orjson.dumps({"resourceType": "Patient", "id": "a", "active": True})
    assert read.last_updated == T0
    assert not read.deleted


async def test_read_of_unknown_is_none(store: Store) -> None:
    assert await store.read("Patient", "missing") is None
    assert await store.vread("Patient", "missing", 1) is None


async def test_versions_accumulate_and_vread_finds_each(store: Store) -> None:
    await store.write([put("Patient", "a", 0, T0, active=True)])
    await store.write([put("Patient", "a", 1, T0 + timedelta(seconds=1), active=False)])
    v1, v2 = await store.vread("Patient", "a", 1), await store.vread("Patient", "a", 2)
    assert v1 is not None and b"true" in v1.body
    assert v2 is not None and b"false" in v2.body
    assert (await store.read("Patient", "a")).version_id == 2  # type: ignore[union-attr]


async def test_current_versions_of_many_ids_in_one_call(store: Store) -> None:
    """Written ids give their current version (a deletion's tombstone included); others are absent."""
    await store.write([put("Patient", "a", 0, T0), put("Patient", "b", 0, T0), put("Group", "a", 0, T0)])
    await store.write([put("Patient", "a", 1, T0 + timedelta(seconds=1))])
    await store.write([delete("Patient", "b", 1, T0 + timedelta(seconds=2))])
    found = await store.current_versions("Patient", ["a", "b", "never", "a"])
    assert found == {"a": 2, "b": 2}
    assert await store.current_versions("Group", ["a", "b"]) == {"a": 1}
    assert await store.current_versions("Patient", []) == {}


async def test_current_versions_of_more_ids_than_one_query_binds(store: Store) -> None:
    ids = [f"p{n}" for n in range(1200)]
    await store.write([put("Patient", i, 0, T0) for i in ids[::3]])
    found = await store.current_versions("Patient", ids)
    assert found == {i: 1 for i in ids[::3]}


async def test_stale_expected_version_is_refused(store: Store) -> None:
    await store.write([put("Patient", "a", 0, T0)])
    with pytest.raises(VersionConflict) as raised:
        await store.write([put("Patient", "a", 0, T0)])
    assert raised.value.actual == 1


async def test_a_failing_op_rolls_back_the_whole_write(store: Store) -> None:
    await store.write([put("Patient", "a", 0, T0)])
    with pytest.raises(VersionConflict):
        await store.write([put("Patient", "b", 0, T0), put("Patient", "a", 0, T0)])
    assert await store.read("Patient", "b") is None
    assert (await store.read("Patient", "a")).version_id == 1  # type: ignore[union-attr]


async def test_racing_writers_on_one_version_only_one_wins(store: Store) -> None:
    await store.write([put("Patient", "a", 0, T0)])
    results = await asyncio.gather(
        *(store.write([put("Patient", "a", 1, T0, n=n)]) for n in range(10)), return_exceptions=True
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, VersionConflict) for r in results if isinstance(r, Exception))


async def test_delete_writes_a_tombstone_kept_in_history(store: Store) -> None:
    await store.write([put("Patient", "a", 0, T0)])
    [tomb] = await store.write([delete("Patient", "a", 1, T0 + timedelta(seconds=1))])
    assert tomb.deleted and tomb.version_id == 2
    current = await store.read("Patient", "a")
    assert current is not None and current.deleted and current.body == b""
    page = await store.history(HistoryQuery("Patient", "a"))
    assert [(e.version_id, e.deleted) for e in page.entries] == [(2, True), (1, False)]
    assert page.total == 2


async def test_history_levels_since_at_and_paging(store: Store) -> None:
    await store.write([put("Patient", "a", 0, T0)])
    await store.write([put("Observation", "o", 0, T0 + timedelta(minutes=1), status="final")])
    await store.write([put("Patient", "a", 1, T0 + timedelta(minutes=2))])
    system = await store.history(HistoryQuery())
    assert [(e.resource_type, e.version_id) for e in system.entries] == [
        ("Patient", 2),
        ("Observation", 1),
        ("Patient", 1),
    ]
    by_type = await store.history(HistoryQuery("Patient"))
    assert by_type.total == 2
    since = await store.history(HistoryQuery(since=T0 + timedelta(minutes=1)))
    assert since.total == 2
    at = await store.history(HistoryQuery("Patient", "a", at=T0 + timedelta(minutes=1)))
    assert [e.version_id for e in at.entries] == [1]
    first = await store.history(HistoryQuery(count=2))
    assert len(first.entries) == 2 and first.next_offset == 2
    rest = await store.history(HistoryQuery(count=2, offset=2))
    assert len(rest.entries) == 1 and rest.next_offset is None


async def test_history_type_filter_keeps_only_allowed_types(store: Store) -> None:
    await store.write([put("Patient", "a", 0, T0), put("Observation", "o", 0, T0, status="final")])
    page = await store.history(HistoryQuery(type_filter=frozenset({"Observation"})))
    assert [e.resource_type for e in page.entries] == ["Observation"]


async def test_stats_count_live_resources(store: Store) -> None:
    await store.write([put("Patient", "a", 0, T0), put("Patient", "b", 0, T0)])
    await store.write([delete("Patient", "b", 1, T0)])
    stats = await store.stats()
    assert stats.resources == 1
    assert stats.versions == 3
