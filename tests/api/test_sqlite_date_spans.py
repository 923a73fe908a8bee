"""The SQLite store keeps, per date parameter, its widest entry and whether a resource ever had two
(ix_date_span): what lets a date walk start at a clause's bound (see sqlite_index._date_bounds)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fhir_server.indexing.entries import MAX_INSTANT
from fhir_server.rest.writes import plan_put
from fhir_server.search.parse import parse_search
from fhir_server.storage import sqlite_index
from fhir_server.storage.sqlite import SqliteStore
from fhir_server.storage.sqlite_index import pid

HOUR_US = 3_600_000_000
SECOND_US = 1_000_000  # an end given to the second covers that second: [start, end + 1 s)


def encounter(id: str, start: str, end: str | None) -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    ambulatory = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
    return {
        "resourceType": "Encounter",
        "id": id,
        "status": "finished",
        "period": period,
        "class": ambulatory,
    }


def goal(id: str, *due: str) -> dict[str, Any]:
    return {"resourceType": "Goal", "id": id, "lifecycleStatus": "active", "description": {"text": "walk"},
            "subject": {"reference": "Patient/p1"}, "target": [{"dueDate": d} for d in due]}  # fmt: skip


async def write(store: SqliteStore, *resources: dict[str, Any], expected: int = 0) -> None:
    now = datetime.now(UTC)
    await store.write([plan_put(r, r["id"], expected, now) for r in resources])


def spans(db: Path) -> dict[int, tuple[int, int]]:
    conn = sqlite3.connect(db)
    try:
        return {
            p: (span, multi) for p, span, multi in conn.execute("SELECT pid, span, multi FROM ix_date_span")
        }
    finally:
        conn.close()


ENCOUNTER, GOAL = pid("Encounter", "date"), pid("Goal", "target-date")


async def test_writes_widen_the_span_and_mark_parameters_with_two_entries(tmp_path: Path) -> None:
    db = tmp_path / "spans.sqlite3"
    store = SqliteStore(db)
    await store.open()
    try:
        await write(store, encounter("e1", "2026-06-01T10:00:00Z", "2026-06-01T13:00:00Z"))
        assert spans(db)[ENCOUNTER] == (3 * HOUR_US + SECOND_US, 0)
        await write(store, encounter("e2", "2026-06-02T10:00:00Z", "2026-06-02T11:00:00Z"))
        assert spans(db)[ENCOUNTER] == (3 * HOUR_US + SECOND_US, 0)  # a narrower entry leaves it
        await write(store, encounter("e2", "2026-06-02T10:00:00Z", "2026-06-03T10:00:00Z"), expected=1)
        assert spans(db)[ENCOUNTER] == (24 * HOUR_US + SECOND_US, 0)  # an update widens it
        await write(store, goal("g1", "2026-07-01"), goal("g2", "2026-07-01", "2027-01-01"))
        assert spans(db)[GOAL] == (24 * HOUR_US, 1)  # g2 has two target dates
        await write(store, encounter("e3", "2026-06-04T10:00:00Z", None))
        assert spans(db)[ENCOUNTER] == (MAX_INSTANT, 0)  # still going on: no width bounds it
    finally:
        await store.close()


async def test_a_store_made_before_the_table_has_it_filled_on_opening(tmp_path: Path) -> None:
    db = tmp_path / "older.sqlite3"
    store = SqliteStore(db)
    await store.open()
    await write(
        store,
        encounter("e1", "2026-06-01T10:00:00Z", "2026-06-01T12:00:00Z"),
        goal("g1", "2026-07-01", "2027-01-01"),
    )
    await store.close()
    made = spans(db)
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE ix_date_span")
    conn.commit()
    conn.close()

    reopened = SqliteStore(db)
    await reopened.open()
    await reopened.close()
    assert spans(db) == made == {ENCOUNTER: (2 * HOUR_US + SECOND_US, 0), GOAL: (24 * HOUR_US, 1)}


async def test_a_store_not_yet_opened_by_this_version_is_searched_without_bounds(tmp_path: Path) -> None:
    """A connection to a file no server of this version has opened (no ix_date_span yet, as the
    benchmarks' bare connections meet) searches by date as before, without the bounds."""
    db = tmp_path / "unopened.sqlite3"
    store = SqliteStore(db)
    await store.open()
    await write(store, encounter("e1", "2026-06-01T10:00:00Z", "2026-06-01T12:00:00Z"))
    await store.close()
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE ix_date_span")
    conn.commit()
    query = parse_search("Encounter", [("date", "ge2026-06-01"), ("_sort", "date")]).query
    try:
        assert [m.id for m in sqlite_index.search_sql(conn, query).matches] == ["e1"]
    finally:
        conn.close()
