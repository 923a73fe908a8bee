"""`python -m seed_data --patients N --seed S --out trust.ndjson`: write a synthetic trust as NDJSON."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from seed_data.generator import generate_trust

console = Console(stderr=True)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    written = write_ndjson(args.out, patients=args.patients, seed=args.seed, today=args.today)
    console.print(f"{args.out}: {written} resources for {args.patients} patients (seed {args.seed})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m seed_data", description="Generate a synthetic NHS trust")
    parser.add_argument("--patients", type=int, required=True, help="number of patients (~83 resources each)")
    parser.add_argument("--seed", type=int, default=1, help="random seed: same seed, same output")
    parser.add_argument("--out", type=Path, required=True, help="NDJSON file to write")
    parser.add_argument(
        "--today",
        type=date.fromisoformat,
        default=None,
        help="the day appointments are relative to (YYYY-MM-DD)",
    )
    return parser


def write_ndjson(
    out: Path, *, patients: int, seed: int = 1, today: date | None = None, quiet: bool = False
) -> int:
    """Write the trust to `out`, one resource a line; returns the number of resources."""
    written = 0
    with _progress(quiet) as progress, out.open("wb") as sink:
        task = progress.add_task("patients", total=patients)
        for resource in generate_trust(patients=patients, seed=seed, today=today):
            sink.write(orjson.dumps(resource) + b"\n")
            written += 1
            if resource["resourceType"] == "Patient":
                progress.advance(task)
    return written


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )


if __name__ == "__main__":
    main()
