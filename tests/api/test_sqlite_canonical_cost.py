"""Chains through canonicals over a densely linked graph (each Library depends on 5 others): each
level must cost in proportion to the resources it reaches, not to the paths to them. Without a
distinct set per level the paths multiply by 5 a level (4 levels over 3,000 Libraries took 4.7 s).
Counted in SQLite virtual-machine steps, not time, so the check holds on any machine."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fhir_server.rest.writes import plan_put
from fhir_server.search.parse import parse_search
from fhir_server.storage import sqlite_index
from fhir_server.storage.sqlite import SqliteStore
from tests.sqlite_steps import counting_steps

LIBRARIES = 300


def library(i: int, rng: random.Random) -> dict[str, Any]:
    links = [f"http://example.org/Library/{rng.randrange(LIBRARIES)}" for _ in range(5)]
    return {
        "resourceType": "Library",
        "id": f"l{i}",
        "url": f"http://example.org/Library/{i}",
        "status": "active",
        "type": {"text": "logic"},
        "relatedArtifact": [{"type": "depends-on", "resource": link} for link in links],
    }


async def steps(db: Path, depth: int) -> tuple[int, int | None]:
    conn = sqlite3.connect(db)
    chain = ".".join(["depends-on"] * depth)
    query = parse_search("Library", [(f"{chain}.status", "active"), ("_total", "accurate")]).query
    try:
        with counting_steps(conn) as counted:
            page = sqlite_index.search_sql(conn, query)
    finally:
        conn.close()
    return counted[0], page.total


async def test_each_level_of_a_canonical_chain_costs_what_it_reaches(tmp_path: Path) -> None:
    db = tmp_path / "fhir.sqlite3"
    store = SqliteStore(db)
    await store.open()
    rng = random.Random(7)
    try:
        await store.write(
            [plan_put(library(i, rng), f"l{i}", 0, datetime.now(UTC)) for i in range(LIBRARIES)]
        )
    finally:
        await store.close()
    two, total_two = await steps(db, 2)
    four, total_four = await steps(db, 4)
    assert total_two == total_four == LIBRARIES  # everything links to something active
    assert four < 4 * two, (two, four)  # twice the levels: about twice the work (25x if paths multiply)
