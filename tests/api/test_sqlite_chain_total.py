"""A lone chained criterion (`Appointment?actor:Patient.gender=female`) over more targets than a
page: its total comes from counting the chain's set while sizing it, so the chain runs in full
twice (sizing, page), not three times (then the total again, 15 of its 48 ms at 1M resources).
The total must still be the number of distinct matches: an Appointment with two matching actors
counts once, one whose only matching actor is deleted not at all."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fhir_server.rest.writes import plan_delete, plan_put
from fhir_server.search.parse import parse_search
from fhir_server.storage import sqlite_index
from fhir_server.storage.sqlite import SqliteStore

WOMEN, MEN = 700, 50  # over FEW (500) entries, under WALK_FROM (5,000)


def _appointment(id: str, *actors: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": id,
        "status": "booked",
        "participant": [{"actor": {"reference": f"Patient/{a}"}, "status": "accepted"} for a in actors],
    }


async def _store(db: Path) -> None:
    store = SqliteStore(db)
    await store.open()
    try:
        now = datetime.now(UTC)
        people = [("w", "female", WOMEN), ("m", "male", MEN)]
        patients = [
            {"resourceType": "Patient", "id": f"{p}{i}", "gender": g} for p, g, n in people for i in range(n)
        ]
        visits = [_appointment(f"a{i}", f"w{i}") for i in range(WOMEN)]
        visits += [_appointment(f"m{i}", f"m{i}") for i in range(MEN)]
        visits.append(_appointment("two", "w1", "w2"))  # two matching actors: one match
        visits.append(_appointment("gone", "w-deleted"))
        deleted = {"resourceType": "Patient", "id": "w-deleted", "gender": "female"}
        [*_, gone] = await store.write([plan_put(r, r["id"], 0, now) for r in [*visits, *patients, deleted]])
        await store.write([plan_delete(gone, now)])
    finally:
        await store.close()


async def test_a_lone_chain_is_totalled_while_sized_and_runs_twice(tmp_path: Path) -> None:
    db = tmp_path / "chain.sqlite3"
    await _store(db)
    conn = sqlite3.connect(db)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        query = parse_search("Appointment", [("actor:Patient.gender", "female")]).query
        page = sqlite_index.search_sql(conn, query)
        everything = parse_search("Appointment", [("_count", "1000")]).query
        truth = {m.id for m in sqlite_index.search_sql(conn, everything).matches}
    finally:
        conn.close()
    women = {f"a{i}" for i in range(WOMEN)} | {"two"}
    assert women < truth and "gone" in truth  # the store holds what the question is about
    assert page.total == len(women) == WOMEN + 1
    assert len(page.matches) == 20 and {m.id for m in page.matches} < women
    chain_runs = [s for s in statements if "ix_ref" in s and "count(DISTINCT res)" not in s]
    assert len(chain_runs) == 1, chain_runs  # the page; the total came from sizing
