"""Generate the trimmed search-parameter registry shipped in fhir_server/indexing/data/.

The server must not need ../shared at run time, so this script reads the official R4 definitions
once and writes three compact files:

- search_parameters.json: the 1,400 R4 SearchParameters (plus ours from profiles/*.json), keeping
  only url, code, base, type, expression, target, modifier, comparator, component, multipleOr/And.
- patient_compartment.json: resource type -> the param codes that put it in a Patient compartment
  (from the official Patient CompartmentDefinition).
- element_types.json: for every resource and complex datatype, element name -> its type(s), so the
  FHIRPath compiler resolves each step (and each choice type's JSON key) once, at compile time.
  A `code` element with a required binding to a value set drawn from one code system is written
  "code|<system>", giving token entries their implicit system (Patient.gender etc.).

Usage: python tools/gen_search_registry.py [--shared ../shared/fhir-r4/definitions]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fhir_server" / "indexing" / "data"
DEFAULT_SHARED = ROOT.parent / "shared" / "fhir-r4" / "definitions"
KEPT_FIELDS = (
    "url",
    "code",
    "base",
    "type",
    "expression",
    "target",
    "modifier",
    "comparator",
    "component",
    "multipleOr",
    "multipleAnd",
)
# FHIRPath's System.String on `id` elements is a FHIR string for our purposes.
SYSTEM_TYPES = {"http://hl7.org/fhirpath/System.String": "string"}


def load_bundle(path: Path) -> list[dict[str, Any]]:
    bundle = json.loads(path.read_text())
    return [e["resource"] for e in bundle.get("entry", [])]


def trim_param(sp: dict[str, Any]) -> dict[str, Any]:
    return {k: sp[k] for k in KEPT_FIELDS if k in sp}


def our_params() -> list[dict[str, Any]]:
    """SearchParameters this server defines itself, as JSON files (or Bundles) in profiles/."""
    found: list[dict[str, Any]] = []
    for path in sorted((ROOT / "profiles").glob("*.json")):
        data = json.loads(path.read_text())
        items = (
            [e["resource"] for e in data.get("entry", [])] if data.get("resourceType") == "Bundle" else [data]
        )
        found.extend(r for r in items if r.get("resourceType") == "SearchParameter")
    return found


def patient_compartment(compartments: list[dict[str, Any]]) -> dict[str, list[str]]:
    patient = next(c for c in compartments if c.get("code") == "Patient")
    return {r["code"]: list(r["param"]) for r in patient["resource"] if r.get("param")}


def single_system_valuesets(valuesets: list[dict[str, Any]]) -> dict[str, str]:
    """Value set URL -> its one code system, for value sets that draw on exactly one."""
    out: dict[str, str] = {}
    for vs in valuesets:
        systems = {inc.get("system") for inc in vs.get("compose", {}).get("include", [])}
        if len(systems) == 1 and None not in systems:
            out[vs["url"]] = str(systems.pop())
    return out


def element_type_names(el: dict[str, Any], vs_system: dict[str, str]) -> list[str]:
    if "contentReference" in el:
        return [el["contentReference"].lstrip("#")]
    names = [SYSTEM_TYPES.get(t["code"], t["code"]) for t in el.get("type", [])]
    if names in (["BackboneElement"], ["Element"]):
        return [el["path"]]  # a nested element is its own type, named by its path
    binding = el.get("binding", {})
    if names == ["code"] and binding.get("strength") == "required":
        system = vs_system.get(str(binding.get("valueSet", "")).split("|")[0])
        if system:
            return [f"code|{system}"]
    return names


def element_types(sds: list[dict[str, Any]], vs_system: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    """Owner (type name or backbone path) -> {element name (with [x] kept) -> type names}."""
    types: dict[str, dict[str, list[str]]] = {}
    for sd in sds:
        if sd["kind"] == "primitive-type":
            continue
        for el in sd["snapshot"]["element"][1:]:
            owner, _, name = el["path"].rpartition(".")
            types.setdefault(owner, {})[name] = element_type_names(el, vs_system)
    return types


def write_json(name: str, data: Any) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    args = parser.parse_args()
    defs: Path = args.shared
    params = [trim_param(sp) for sp in load_bundle(defs / "search-parameters.json") + our_params()]
    write_json("search_parameters.json", params)
    write_json("patient_compartment.json", patient_compartment(load_bundle(defs / "compartments.json")))
    vs_system = single_system_valuesets(load_bundle(defs / "valuesets.json"))
    write_json(
        "element_types.json", element_types(load_bundle(defs / "structuredefinitions.json"), vs_system)
    )
    print(f"wrote {len(params)} search parameters to {OUT}")


if __name__ == "__main__":
    main()
