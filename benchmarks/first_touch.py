"""A patient's letters searched in the store alone, the first and the second time in one process.

    python benchmarks/first_touch.py [--patients 300]

Uses the stores `search_bench.py` keeps under benchmarks/results/ (run it first). For each store it
opens one connection as the server does (the file mapped), searches the letters of 50 patients to
warm up, then those of `--patients` others twice over, and prints p50/p95 of each pass. The gap
between the passes is the cost of meeting a patient's pages for the first time in a process (the
mapping faulted in), which grows with the store; the second pass is the query itself.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import time
from pathlib import Path

import harness  # noqa: F401  (puts the project on sys.path)
from harness import RESULTS, median, percentile

from fhir_server.search.parse import parse_search
from fhir_server.storage import sqlite_index
from fhir_server.storage.sqlite import SqliteStore


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=300, help="patients searched twice per store")
    parser.add_argument(
        "--prewarm",
        action="store_true",
        help="first read every index and body through the connection (what a server could do at start-up)",
    )
    args = parser.parse_args()
    stores = sorted(RESULTS.glob("trust-*.store/fhir.sqlite3"), key=lambda p: p.stat().st_size)
    if not stores:
        raise SystemExit("no stores under benchmarks/results/: run benchmarks/search_bench.py first")
    print(f"{'store':<44}{'patients':>9}  first p50 / p95 us   second p50 / p95 us")
    for path in stores:
        first, second, patients = _passes(path, args.patients, args.prewarm)
        if not first:
            print(f"{path.parent.name:<44}{patients:>9,}  (too few patients beyond the 50 of the warm-up)")
            continue
        print(
            f"{path.parent.name:<44}{patients:>9,}  {median(first):>7.0f} / {percentile(first, 95):>6.0f}"
            f"       {median(second):>7.0f} / {percentile(second, 95):>6.0f}"
        )


def _passes(path: Path, count: int, prewarm: bool) -> tuple[list[float], list[float], int]:
    conn = SqliteStore(path)._connect()  # the server's own settings (the file mapped)
    try:
        ids = [
            row[0] for row in conn.execute("SELECT id FROM resource WHERE type = 'Patient' AND deleted = 0")
        ]
        random.Random(1).shuffle(ids)
        warm, chosen = ids[:50], ids[50 : 50 + count]
        for patient in warm:
            _letters(conn, patient)
        if prewarm:
            started = time.perf_counter()
            for sql in _PREWARM:
                conn.execute(sql).fetchone()
            print(f"  (prewarm of {path.parent.name}: {time.perf_counter() - started:.1f} s)")
        return [_letters(conn, p) for p in chosen], [_letters(conn, p) for p in chosen], len(ids)
    finally:
        conn.close()


# What a patient's letters read: the reference and date indexes, resource rows, versions and bodies.
_PREWARM = [
    "SELECT count(*) FROM ix_ref INDEXED BY ix_ref_target",
    "SELECT count(*) FROM ix_date INDEXED BY ix_date_value",
    "SELECT count(*) FROM ix_date",
    "SELECT count(*) FROM resource",
    "SELECT count(*) FROM version INDEXED BY sqlite_autoindex_version_1",
    "SELECT sum(length(body)) FROM version",
]


def _letters(conn: sqlite3.Connection, patient: str) -> float:
    """Microseconds for `DocumentReference?patient=X&_sort=-date&_count=20` in the store."""
    params = [("patient", patient), ("_sort", "-date"), ("_count", "20")]
    query = parse_search("DocumentReference", params).query
    started = time.perf_counter()
    sqlite_index.search_sql(conn, query)
    return (time.perf_counter() - started) * 1e6


if __name__ == "__main__":
    main()
