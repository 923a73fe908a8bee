"""Read-by-id throughput next to a bare FastAPI ceiling, and 100-entry transaction time (issue 3).

    python benchmarks/read_bench.py [--quick] [--workers N] [--patients N] [--seconds S]

Starts, on 127.0.0.1 only: our server (`fhir-server serve --no-auth`) on a fresh embedded store
holding a generated trust, and a bare FastAPI app returning a constant Patient, both under uvicorn
with the same worker count. Loads each with 8 connections (wrk when installed, else httpx) for the
same time after a warm-up, then times transaction Bundles. Every figure printed comes from this run.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import date
from pathlib import Path

import harness
import orjson
from bundles import transaction_bundles
from harness import (
    RESULTS,
    LoadResult,
    bare_server,
    free_port,
    import_ndjson,
    median,
    our_server,
    percentile,
    run_load,
)

from seed_data.__main__ import write_ndjson

TODAY = date(2026, 11, 24)
SEED = 1
MEDPLUM = {"reads_per_s": 2807.0, "p99_ms": 11.6, "transaction_ms": 285.0}
BARE_REFERENCE = 14_000.0  # bare FastAPI as measured with the Medplum figures (another run, for context)
TARGETS = {"reads_per_s": 3 * MEDPLUM["reads_per_s"], "transaction_ms": MEDPLUM["transaction_ms"] / 5}


def main() -> None:
    args = _args()
    print(harness.runtime())
    seconds, warmup = (3.0, 1.0) if args.quick else (args.seconds, 3.0)
    runs, warm_runs = (5, 2) if args.quick else (20, 3)
    with tempfile.TemporaryDirectory(prefix="read-bench-") as tmp:
        data_dir, paths = _prepare_store(Path(tmp), args.patients)
        print(
            f"store: {len(paths)} readable Patient/Observation ids; load {seconds:.0f} s at 8 connections, "
            f"{args.workers} worker(s)"
        )
        bare = _measure_bare(args.workers, paths, seconds, warmup)
        ours, transaction_ms = _measure_ours(data_dir, args.workers, paths, seconds, warmup, runs, warm_runs)
    _report(ours, bare, transaction_ms)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (short loads, few transactions)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers for both servers")
    parser.add_argument("--patients", type=int, default=40, help="patients in the store (~83 resources each)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of load per server (full run)")
    return parser.parse_args()


def _prepare_store(tmp: Path, patients: int) -> tuple[Path, list[str]]:
    """Generate a trust, import it with `fhir-server import`; the read paths (Patients, Observations)."""
    ndjson, data_dir = tmp / "trust.ndjson", tmp / "data"
    count = write_ndjson(ndjson, patients=patients, seed=SEED, today=TODAY, quiet=True)
    seconds = import_ndjson(ndjson, data_dir)
    print(
        f"imported {count} resources in {seconds:.1f} s ({count / seconds:,.0f} resources/s incl. start-up)"
    )
    paths = []
    for line in ndjson.open("rb"):
        resource = orjson.loads(line)
        if resource["resourceType"] in ("Patient", "Observation"):
            paths.append(f"/fhir/{resource['resourceType']}/{resource['id']}")
    return data_dir, paths


def _measure_bare(workers: int, paths: list[str], seconds: float, warmup: float) -> LoadResult:
    port = free_port()
    with bare_server(port, workers, RESULTS / "bare_app.log"):
        run_load(port, paths, seconds=warmup)
        return run_load(port, paths, seconds=seconds)


def _measure_ours(
    data_dir: Path, workers: int, paths: list[str], seconds: float, warmup: float, runs: int, warm_runs: int
) -> tuple[LoadResult, list[float]]:
    port = free_port()
    with our_server(data_dir, port, workers, RESULTS / "read_bench_server.log"):
        _check_reads(port, paths)
        run_load(port, paths, seconds=warmup)
        reads = run_load(port, paths, seconds=seconds)
        return reads, _time_transactions(port, runs, warm_runs)


def _check_reads(port: int, paths: list[str]) -> None:
    """A read must really answer 200 with the resource, or the load figures mean nothing."""
    for path in (paths[0], paths[-1]):
        status, body = harness.get(port, path)
        if status != 200 or orjson.loads(body).get("id") != path.rsplit("/", 1)[1]:
            raise SystemExit(f"GET {path} answered {status}: {body[:300]!r}")


def _time_transactions(port: int, runs: int, warm_runs: int) -> list[float]:
    """POST `runs` 100-entry transaction Bundles (after warm-up ones); milliseconds each."""
    bundles = transaction_bundles(
        size=100, count=runs + warm_runs, patients=3 * (runs + warm_runs), seed=SEED + 1, today=TODAY
    )
    conn = harness.Connection(port)
    times = []
    try:
        for n, bundle in enumerate(bundles):
            status, body, ms = conn.timed("POST", "/fhir", orjson.dumps(bundle))
            if status != 200:
                raise SystemExit(f"transaction answered {status}: {body[:500]!r}")
            if n >= warm_runs:
                times.append(ms)
    finally:
        conn.close()
    return times


def _report(ours: LoadResult, bare: LoadResult, transaction_ms: list[float]) -> None:
    reads_target = TARGETS["reads_per_s"]
    print()
    print(f"read-by-id, 8 connections ({ours.tool})   req/s      p50 ms   p99 ms   errors")
    _row("bare FastAPI (ceiling)", bare)
    _row("fhir-server", ours)
    medplum = f"{MEDPLUM['reads_per_s']:>9,.0f}            {MEDPLUM['p99_ms']:>7.1f}"
    print(f"  {'Medplum 5.0.10 (reference)':<32}{medplum}")
    print(f"ours / bare: {ours.rps / bare.rps:.2f}   ours / Medplum: {ours.rps / MEDPLUM['reads_per_s']:.2f}")
    print(f"target: >= 3x Medplum = {reads_target:,.0f}/s: {_verdict(ours.rps >= reads_target)}")
    print(f"bare here / bare beside the reference figures (~14,000/s): {bare.rps / BARE_REFERENCE:.2f}")
    scaled = ours.rps / bare.rps * BARE_REFERENCE
    vs_medplum = scaled / MEDPLUM["reads_per_s"]
    print(
        f"scaled to the reference machine (ours/bare x 14,000): {scaled:,.0f}/s = {vs_medplum:.1f}x Medplum"
    )
    med, p95 = median(transaction_ms), percentile(transaction_ms, 95)
    print()
    print(f"100-entry transaction Bundle, {len(transaction_ms)} runs: median {med:.1f} ms, p95 {p95:.1f} ms")
    medplum_ms, target_ms = MEDPLUM["transaction_ms"], TARGETS["transaction_ms"]
    print(
        f"Medplum {medplum_ms:.0f} ms (Medplum / ours: {medplum_ms / med:.1f}x); "
        f"target <= {target_ms:.0f} ms: {_verdict(med <= target_ms)}"
    )


def _verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def _row(name: str, result: LoadResult) -> None:
    print(f"  {name:<32}{result.rps:>9,.0f}   {result.p50_ms:>7.2f}  {result.p99_ms:>7.2f}   {result.errors}")


if __name__ == "__main__":
    main()
