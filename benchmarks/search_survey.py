"""Searches across the whole trust, in the store alone, at every store size: a survey for slow plans.

    python benchmarks/search_survey.py [--limit 5] [--flag-ms 50]

The portal's own searches are measured through HTTP by `search_bench.py`; this runs a catalogue of
other searches a clinician's integration or an app may send (every kind of parameter, modifiers,
chains, `_has`, includes, sorts, offsets, totals) on each store `search_bench.py` keeps under
benchmarks/results/ (run it first). For each it prints the best of two runs after a first one, in
ms, per store size, and the growth from the smallest store to the largest. A search past `--limit`
seconds is stopped and shown as such; rows over `--flag-ms` at the largest size are marked `<<`.
A plan that reads a whole type for each resource it probes shows up here as seconds, not ms.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path

import harness  # noqa: F401  (puts the project on sys.path)
from harness import RESULTS

from fhir_server.search.parse import parse_search
from fhir_server.storage import sqlite_index
from fhir_server.storage.sqlite import SqliteStore

# The stores' data is generated as of 2026-11-24 (search_bench.TODAY).
SURVEY = [
    "Patient?name=smi",
    "Patient?name:exact=Smith",
    "Patient?family=smith&_sort=given",
    "Patient?gender=female",
    "Patient?birthdate=ge1980-01-01&birthdate=lt1981-01-01",
    "Patient?gender:missing=true",
    "Patient?_sort=family",
    "Patient?_sort=-birthdate",
    "Patient?_lastUpdated=gt2000-01-01&_sort=-_lastUpdated",
    "Patient?_has:Observation:patient:code=8480-6",
    "Patient?gender=female&_has:Observation:patient:code=8480-6",
    "Patient?_has:Consent:patient:status=active",
    "Patient?name=smith&_revinclude=Consent:patient",
    "Observation?status=final",
    "Observation?status:not=final",
    "Observation?status=final&_offset=40",
    "Observation?status=final&_total=accurate",
    "Observation?status=final&_summary=count",
    "Observation?category=laboratory",
    "Observation?code=http://loinc.org|8480-6",
    "Observation?code:text=blood",
    "Observation?code=8480-6&_sort=-date",
    "Observation?code=8480-6&_sort=-date&_offset=40",
    "Observation?code=8480-6&date=ge2026-11-01",
    "Observation?date=ge2026-11-20&_sort=-date",
    "Observation?_sort=-date",
    "Observation?_sort=date&_offset=40",
    "Observation?value-quantity=gt150",
    "Observation?code=8480-6&value-quantity=gt150",
    "Observation?component-code-value-quantity=http://loinc.org|8480-6$gt140",
    "Observation?status=final&_sort=-_lastUpdated",
    "Patient?name:contains=mit",
    "Observation?subject:Patient.name=smith",
    "Observation?subject.name=smith&code=8480-6",
    "Observation?code=718-7&_include=Observation:subject",
    "DocumentReference?status=current&_sort=-date",
    "DocumentReference?type=57133-1&_sort=-date",
    "DocumentReference?date=ge2026-11-01&_sort=-date",
    "DocumentReference?subject:Patient.gender=male",
    "DocumentReference?_sort=-_lastUpdated",
    "DocumentReference?_content=letter",
    "Appointment?date=2026-11-30",
    "Appointment?status=booked",
    "Appointment?status=booked&_sort=date",
    "Appointment?date=ge2026-11-24&_sort=date",
    "Appointment?date=ge2026-11-24&date=lt2026-12-01&_sort=date",
    "Appointment?date=2026-11-30&_include=Appointment:patient",
    "Consent?status=active",
    "Consent?patient:Patient.gender=female",
    "MedicationStatement?status=active",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=float, default=5.0, help="seconds after which a search is stopped")
    parser.add_argument(
        "--flag-ms", type=float, default=50.0, help="mark searches slower at the largest size"
    )
    args = parser.parse_args()
    stores = sorted(RESULTS.glob("trust-*.store/fhir.sqlite3"), key=lambda p: p.stat().st_size)
    if not stores:
        raise SystemExit("no stores under benchmarks/results/: run benchmarks/search_bench.py first")
    sizes = [_resources(path) for path in stores]
    times = [[_time(path, query, args.limit) for query in SURVEY] for path in stores]
    heading = "".join(f"{size:>11,}" for size in sizes)
    print(f"{'ms in the store, by resources':<64}{heading}{'growth':>9}")
    flagged = 0
    for i, query in enumerate(SURVEY):
        row = [times[s][i] for s in range(len(stores))]
        cells = "".join(f"{'> ' + str(args.limit) + ' s' if t is None else f'{t:.2f}':>11}" for t in row)
        first, last = row[0], row[-1]
        growth = f"{last / first:>8.1f}x" if first and last else f"{'':>9}"
        slow = last is None or last > args.flag_ms
        flagged += slow
        print(f"  {query:<62}{cells}{growth}{'  <<' if slow else ''}")
    print(f"{flagged} of {len(SURVEY)} searches over {args.flag_ms:.0f} ms at {sizes[-1]:,} resources")


def _resources(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM resource").fetchone()[0])
    finally:
        conn.close()


def _time(path: Path, query: str, limit: float) -> float | None:
    """Best of two runs after a first, in ms; None when a run passes `limit` seconds."""
    resource_type, _, params = query.partition("?")
    parsed = parse_search(resource_type, [tuple(p.split("=", 1)) for p in params.split("&")])  # type: ignore[misc]
    conn = SqliteStore(path)._connect()  # the server's own settings (the file mapped)
    deadline = 0.0
    conn.set_progress_handler(lambda: int(time.perf_counter() > deadline), 10_000)
    try:
        runs = []
        for _ in range(3):
            deadline = time.perf_counter() + limit
            started = time.perf_counter()
            try:
                sqlite_index.search_sql(conn, parsed.query)
            except sqlite3.OperationalError:  # interrupted
                return None
            runs.append((time.perf_counter() - started) * 1000)
        return min(runs[1:])
    finally:
        conn.close()


if __name__ == "__main__":
    main()
