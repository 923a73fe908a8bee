"""A sort by a string walks its entries in order (sqlite_index._key_walked). A resource with
thousands of values for the key (a Patient with 5,000 names) must cost the walk work in proportion
to its entries, not their square: it took 1.7 s for `Patient?_sort=family&_count=1`. Counted in
SQLite virtual-machine steps, not time, so the check holds on any machine."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from fhir_server.rest.writes import plan_put
from fhir_server.search.parse import parse_search
from fhir_server.storage import sqlite_index
from fhir_server.storage.sqlite import SqliteStore
from tests.sqlite_steps import counting_steps


async def steps_to_sort(db: Path, names: int) -> int:
    store = SqliteStore(db)
    await store.open()
    try:
        now = datetime.now(UTC)
        many = {
            "resourceType": "Patient",
            "id": "many",
            "name": [{"family": f"x{i:05}"} for i in range(names)],
        }
        others = [
            {"resourceType": "Patient", "id": f"p{i}", "name": [{"family": f"y{i}"}]} for i in range(20)
        ]
        await store.write([plan_put(r, r["id"], 0, now) for r in [many, *others]])
    finally:
        await store.close()
    conn = sqlite3.connect(db)
    try:
        with counting_steps(conn) as counted:
            for sort in ("family", "-family"):
                for count in ("1", "3"):
                    query = parse_search("Patient", [("_sort", sort), ("_count", count)]).query
                    page = sqlite_index.search_sql(conn, query)
                    assert page.matches[0].id == ("many" if sort == "family" else "p9")
    finally:
        conn.close()
    return counted[0]


async def test_a_resource_with_many_values_costs_a_sort_in_proportion(tmp_path: Path) -> None:
    small = await steps_to_sort(tmp_path / "small.sqlite3", 200)
    large = await steps_to_sort(tmp_path / "large.sqlite3", 2000)
    assert large < 25 * small, (small, large)  # 10x the names: ~10x the steps (it was ~100x)
