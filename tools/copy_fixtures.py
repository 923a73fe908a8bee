"""Copy the official FHIR R4 examples (CC0) the tests use from ../shared into tests/fixtures/.

Run from the project root: `python tools/copy_fixtures.py [--shared ../shared]`. The tests then need
nothing outside the repository (a user's clone has no ../shared).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    source = args.shared / "fhir-r4" / "examples"
    target = ROOT / "tests" / "fixtures" / "fhir-r4-examples"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    copied = 0
    for path in sorted(source.glob("*.json")):
        shutil.copyfile(path, target / path.name)
        copied += 1
    (target / "README.md").write_text(
        "Official HL7 FHIR R4 4.0.1 example resources (package hl7.fhir.r4.examples, CC0-1.0),\n"
        "copied unedited by tools/copy_fixtures.py.\n"
    )
    print(f"copied {copied} examples to {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
