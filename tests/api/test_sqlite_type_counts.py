"""The embedded store counts each type's live resources at write time (triggers on `resource`), so a
search with no criteria gets its total without counting a million rows. The counts must agree with
the resources through creates, updates, deletes, re-creation after a delete and a failed transaction,
and a store made before the counts existed gets them on opening."""

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
from fhir_server.storage.port import StoredResource
from fhir_server.storage.sqlite import SqliteStore

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def patient(id: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id, **extra}


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


async def test_a_store_from_before_the_counts_gets_them_on_opening(tmp_path: Path) -> None:
    db = tmp_path / "fhir.sqlite3"
    store = SqliteStore(db)
    await store.open()
    written = await store.write([plan_put(patient(f"p{i}"), f"p{i}", 0, NOW) for i in range(4)])
    await store.write([plan_delete(written[0], NOW)])
    await store.close()
    conn = sqlite3.connect(db)  # as an older server left it: no table, no triggers, no mark
    for name in ("type_count_insert", "type_count_update", "type_count_delete"):
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DROP TABLE type_count")
    conn.execute("DELETE FROM store_meta WHERE name = 'type-counts'")
    conn.commit()
    conn.close()

    store = SqliteStore(db)
    await store.open()
    try:
        assert await totals(store, "Patient?_summary=count") == 3
        await store.write([plan_put(patient("p9"), "p9", 0, NOW)])
        assert await totals(store, "Patient?_summary=count") == 4
    finally:
        await store.close()
