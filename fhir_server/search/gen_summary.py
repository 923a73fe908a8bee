"""Generate data/elements.json: each resource type's top-level summary and mandatory elements.

`_summary=true` keeps the elements the base StructureDefinitions mark `isSummary`; `_elements`
always keeps the mandatory ones (min >= 1), as https://hl7.org/fhir/R4/search.html#elements asks.
Choice elements are written with their stem and a trailing `[x]` (e.g. `value[x]`).

Usage: python -m fhir_server.search.gen_summary [../shared/fhir-r4/definitions/structuredefinitions.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT.parent / "shared" / "fhir-r4" / "definitions" / "structuredefinitions.json"
OUT = Path(__file__).resolve().parent / "data" / "elements.json"


def top_level(sd: dict[str, Any]) -> dict[str, list[str]]:
    summary: list[str] = []
    mandatory: list[str] = []
    for element in sd["snapshot"]["element"][1:]:
        _, _, name = element["path"].partition(".")
        if "." in name:
            continue
        if element.get("isSummary"):
            summary.append(name)
        if element.get("min", 0) >= 1:
            mandatory.append(name)
    return {"summary": summary, "mandatory": mandatory}


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    bundle = json.loads(source.read_text())
    sds = [e["resource"] for e in bundle["entry"]]
    out = {
        sd["type"]: top_level(sd)
        for sd in sds
        if sd.get("kind") == "resource" and sd.get("derivation") != "constraint" and not sd.get("abstract")
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(out, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {len(out)} resource types to {OUT}")


if __name__ == "__main__":
    main()
