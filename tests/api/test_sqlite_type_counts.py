"""The embedded store counts each type's live resources at write time, so a search with no criteria
gets its total without counting a million rows. The counts must agree with the resources through
creates, updates, deletes, re-creation after a delete and a failed transaction; a store made before
the counts existed gets them on opening; and where code that keeps no count wrote last (an older
server, after a rollback of a deployment), the store counts instead of trusting them."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fhir_server.errors import VersionConflict
from fhir_server.rest.writes import plan_delete, plan_put
from fhir_server.search.parse import parse_search
from fhir_server.storage import sqlite_index
from fhir_server.storage.port import StoredResource
from fhir_server.storage.sqlite import SqliteStore

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def patient(id: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id, **extra}


def edit(db: Path, *statements: str) -> None:
    """Change the store's file behind its back, as other code could have left it."""
    conn = sqlite3.connect(db)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


async def totals(store: SqliteStore, query: str, **changes: Any) -> int | None:
    resource_type, _, params = query.partition("?")
    pairs = [tuple(p.split("=", 1)) for p in params.split("&")] if params else []
    parsed = parse_search(resource_type or None, pairs)  # type: ignore[arg-type]
    return (await store.search(replace(parsed.query, **changes))).total


async def test_counts_follow_every_kind_of_write(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "fhir.sqlite3")
    await store.open()
    try:
        written = await store.write([plan_put(patient(f"p{i}"), f"p{i}", 0, NOW) for i in range(5)])
        obs = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}
        await store.write([plan_put(obs, "o1", 0, NOW)])
        assert await totals(store, "Patient?_count=1&_total=accurate", total_cap=2) == 5
        assert await totals(store, "Patient?_count=1", total_cap=2) is None  # unasked: as for any search
        assert await totals(store, "Patient?_count=1", total_cap=5) == 5
        assert await totals(store, "Patient?_summary=count") == 5
        assert await totals(store, "?_summary=count") == 6
        assert await totals(store, "?_type=Patient,Observation&_count=1") == 6

        by_id: dict[str, StoredResource] = {s.id: s for s in written}
        await store.write([plan_put(patient("p0", active=True), "p0", 1, NOW)])  # an update
        await store.write([plan_delete(by_id["p1"], NOW), plan_delete(by_id["p2"], NOW)])
        assert await totals(store, "Patient?_summary=count") == 3
        await store.write([plan_put(patient("p1"), "p1", 2, NOW)])  # created again after its delete
        assert await totals(store, "Patient?_summary=count") == 4
        with pytest.raises(VersionConflict):  # all or nothing: the new p9 must not be counted
            await store.write([plan_put(patient("p9"), "p9", 0, NOW), plan_put(patient("p3"), "p3", 7, NOW)])
        assert await totals(store, "Patient?_summary=count") == 4
        # with criteria, the matches are counted as before
        assert await totals(store, "Patient?active=true&_summary=count") == 1
    finally:
        await store.close()


async def four_patients(db: Path) -> list[StoredResource]:
    """A store at `db` holding Patients p0-p3, closed again."""
    store = SqliteStore(db)
    await store.open()
    try:
        return await store.write([plan_put(patient(f"p{i}"), f"p{i}", 0, NOW) for i in range(4)])
    finally:
        await store.close()


async def test_a_store_from_before_the_counts_gets_them_on_opening(tmp_path: Path) -> None:
    db = tmp_path / "fhir.sqlite3"
    written = await four_patients(db)
    store = SqliteStore(db)
    await store.open()
    await store.write([plan_delete(written[0], NOW)])
    await store.close()
    # as an older server left it: no table, no mark
    edit(db, "DROP TABLE type_count", "DELETE FROM store_meta WHERE name = 'type-counts'")
    store = SqliteStore(db)
    await store.open()
    try:
        assert await totals(store, "Patient?_summary=count") == 3
        await store.write([plan_put(patient("p9"), "p9", 0, NOW)])
        assert await totals(store, "Patient?_summary=count") == 4
    finally:
        await store.close()


async def test_counts_left_behind_by_code_that_keeps_none_are_not_trusted(tmp_path: Path) -> None:
    db = tmp_path / "fhir.sqlite3"
    written = await four_patients(db)
    # An older server deletes p0 and creates p9: new rows in `resource` and `version`, no count.
    conn = sqlite3.connect(db)
    conn.execute("UPDATE resource SET deleted = 1, version = 2 WHERE id = 'p0'")
    conn.execute(
        "INSERT INTO version (res, type, version, last_updated, deleted, method, body)"
        " SELECT res, type, 2, last_updated, 1, 'DELETE', NULL FROM resource WHERE id = 'p0'"
    )
    conn.execute(
        "INSERT INTO resource (type, id, version, last_updated, deleted) VALUES ('Patient', 'p9', 1, 0, 0)"
    )
    conn.execute(
        "INSERT INTO version (res, type, version, last_updated, deleted, method, body)"
        " SELECT res, type, 1, 0, 0, 'PUT', '{}' FROM resource WHERE id = 'p9'"
    )
    conn.commit()
    conn.close()
    store = SqliteStore(db)
    await store.open()  # counted again on opening
    try:
        assert store._writer is not None and sqlite_index.stamp_current(
            store._writer, sqlite_index.TYPE_COUNTS
        )
        assert await totals(store, "Patient?_summary=count") == 4
        await store.write([plan_delete(written[1], NOW)])
        assert await totals(store, "Patient?_summary=count") == 3
    finally:
        await store.close()
    store = SqliteStore(db)
    await store.open()
    try:
        conn = store._writer  # the counts as an older server would leave them, with the store open
        assert conn is not None
        conn.execute("UPDATE type_count SET live = 99")
        conn.execute("UPDATE store_meta SET value = -1 WHERE name = 'type-counts'")
        assert await totals(store, "Patient?_summary=count") == 3
        await store.write([plan_put(patient("p5"), "p5", 0, NOW)])  # not made current by a write
        assert await totals(store, "Patient?_summary=count") == 4
    finally:
        await store.close()


def total_count(statements: list[str]) -> str:
    """The statement that counted the total (not a sizing pass, which counts both ways)."""
    (found,) = [s for s in statements if s.startswith("SELECT count(*) FROM (") and "count(DISTINCT" not in s]
    return found


def observation(id: str, *categories: str, date: str = "2026-01-01") -> dict[str, Any]:
    coding = [{"system": system, "code": "vital-signs"} for system in categories]
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [{"coding": coding}],
        "code": {"text": "pulse"},
        "effectiveDateTime": date,
    }


async def test_a_count_needs_no_distinct_while_the_parameter_is_single_valued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`_total=accurate` over one criterion counts its index entries as they are while no resource
    has ever had two for the parameter (ix_multi), and the distinct resources once one has. (Sets
    under WALK_FROM entries are counted while sized; the thresholds are lowered so that 5 are many.)"""
    monkeypatch.setattr(sqlite_index, "FEW", 1)
    monkeypatch.setattr(sqlite_index, "WALK_FROM", 2)
    db = tmp_path / "fhir.sqlite3"
    store = SqliteStore(db)
    await store.open()
    cat = "http://terminology.hl7.org/CodeSystem/observation-category"
    statements: list[str] = []
    try:
        await store.write([plan_put(observation(f"o{i}", cat), f"o{i}", 0, NOW) for i in range(5)])
        assert store.reader is not None
        store.reader.set_trace_callback(statements.append)
        assert await totals(store, "Observation?category=vital-signs&_total=accurate&_count=1") == 5
        assert "DISTINCT" not in total_count(statements)  # counted as entries
        # o9's category holds vital-signs twice (two systems): two entries, one match
        await store.write([plan_put(observation("o9", cat, "urn:other"), "o9", 0, NOW)])
        statements.clear()
        assert await totals(store, "Observation?category=vital-signs&_total=accurate&_count=1") == 6
        assert "SELECT DISTINCT res" in total_count(statements)
        # an OR list may meet one entry twice: never counted as entries
        assert await totals(store, "Observation?date=ge2020,ge2021&_total=accurate&_count=1") == 6
    finally:
        if store.reader is not None:
            store.reader.set_trace_callback(None)
        await store.close()
    # A store from the code before ix_multi: its type counts current, no ix_multi and no stamp for
    # it. Trusting the new, empty table would count o9 twice; it is found again from the entries.
    edit(db, "DELETE FROM ix_multi", "DELETE FROM store_meta WHERE name = 'multi-pids'")
    store = SqliteStore(db)
    await store.open()
    try:
        assert await totals(store, "Observation?category=vital-signs&_total=accurate&_count=1") == 6
    finally:
        await store.close()
