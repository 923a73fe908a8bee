"""Generate the validator's compact R4 schema from the official definitions in ../shared.

Run from the project root: `python tools/gen_validation_data.py [--shared ../shared]`.
Writes `fhir_server/validation/data/r4_schema.json.gz`, so the server never needs ../shared.

What the file holds (https://hl7.org/fhir/R4/elementdefinition.html):
- `types`: for every resource, complex data type and backbone element (keyed by its path, e.g.
  `Patient.contact`), a map from JSON property name to `[type, is_array, value_set_index]`.
  Choice elements are expanded to their JSON names (`valueQuantity`); backbone elements and
  `contentReference`s point at the path that defines their children; `value_set_index` is -1 unless
  the element has a *required* binding to a value set we could expand.
- `value_sets`: `[url, {system: [codes]}]` for the expanded required value sets.
- `required`: per type, the elements with min >= 1, each as `[name, [JSON names]]` (one name, or every
  choice of a `[x]` element); `choices`: per type, `[name, [JSON names]]` of each `[x]` element (at
  most one of them may appear).
- `resources`: the R4 resource types (non-abstract), `primitives`: the R4 primitive types, `regex`: the
  value regex of each primitive type that JSON carries as a string.
- `unexpanded`: required value sets that cannot be enumerated from the definitions (e.g. all MIME
  types, UCUM units); elements bound to them are not checked.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fhir_server" / "validation" / "data" / "r4_schema.json.gz"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
# Element.id and the primitives' `value` use FHIRPath system types; their FHIR type is in an extension.
SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}

Json = dict[str, Any]


def load_bundle(path: Path) -> list[Json]:
    return [entry["resource"] for entry in json.loads(path.read_text())["entry"]]


class ValueSetExpander:
    """Expand value sets by their `compose` (the required ones in R4 use no filters)."""

    def __init__(self, value_sets: list[Json], code_systems: list[Json]) -> None:
        self.value_sets = {vs["url"]: vs for vs in value_sets}
        self.code_systems = {cs["url"]: cs for cs in code_systems}
        self.cache: dict[str, dict[str, set[str]] | None] = {}

    def expand(self, url: str) -> dict[str, set[str]] | None:
        """{system: codes}, or None when the set cannot be enumerated from the definitions."""
        if url not in self.cache:
            self.cache[url] = None  # guards against include cycles
            self.cache[url] = self._expand(url)
        return self.cache[url]

    def _expand(self, url: str) -> dict[str, set[str]] | None:
        vs = self.value_sets.get(url)
        if vs is None or "compose" not in vs:
            return None
        result: dict[str, set[str]] = {}
        for include in vs["compose"].get("include", []):
            part = self._include(include)
            if part is None:
                return None
            for system, codes in part.items():
                result.setdefault(system, set()).update(codes)
        for exclude in vs["compose"].get("exclude", []):
            part = self._include(exclude)
            for system, codes in (part or {}).items():
                result.get(system, set()).difference_update(codes)
        return result

    def _include(self, include: Json) -> dict[str, set[str]] | None:
        if "filter" in include:
            return None
        parts: list[dict[str, set[str]]] = []
        for ref in include.get("valueSet", []):
            part = self.expand(ref.split("|")[0])
            if part is None:
                return None
            parts.append(part)
        if "system" in include:
            system = include["system"]
            if "concept" in include:
                parts.append({system: {c["code"] for c in include["concept"]}})
            else:
                codes = self._all_codes(system)
                if codes is None:
                    return None
                parts.append({system: codes})
        return _intersect(parts)

    def _all_codes(self, system: str) -> set[str] | None:
        cs = self.code_systems.get(system)
        if cs is None or cs.get("content") != "complete":
            return None
        return set(_flatten(cs.get("concept", [])))


def _flatten(concepts: list[Json]) -> list[str]:
    codes: list[str] = []
    for concept in concepts:
        codes.append(concept["code"])
        codes.extend(_flatten(concept.get("concept", [])))
    return codes


def _intersect(parts: list[dict[str, set[str]]]) -> dict[str, set[str]]:
    """An include with both a system and value sets means codes in all of them."""
    if not parts:
        return {}
    result = {system: set(codes) for system, codes in parts[0].items()}
    for part in parts[1:]:
        result = {s: c & part[s] for s, c in result.items() if s in part}
    return result


def element_type(type_entry: Json) -> str:
    code: str = type_entry["code"]
    for ext in type_entry.get("extension", []):
        if ext.get("url") == FHIR_TYPE_EXT:
            return str(ext.get("valueUrl") or ext.get("valueUri"))
    return SYSTEM_TYPES.get(code, code)


class SchemaBuilder:
    def __init__(self, expander: ValueSetExpander) -> None:
        self.expander = expander
        self.types: dict[str, dict[str, list[Any]]] = {}
        self.vs_index: dict[str, int] = {}
        self.value_sets: list[list[Any]] = []
        self.unexpanded: set[str] = set()
        self.required: dict[str, list[list[Any]]] = {}
        self.choices: dict[str, list[list[Any]]] = {}

    def add_structure(self, sd: Json) -> None:
        for element in sd["snapshot"]["element"]:
            path: str = element["path"]
            if "." not in path:
                self.types.setdefault(path, {})
                continue
            parent, name = path.rsplit(".", 1)
            names = self._json_names(element, path, name)
            group = [name, [n for n, _ in names]]
            if element.get("min", 0) >= 1:
                self.required.setdefault(parent, []).append(group)
            if name.endswith("[x]"):
                self.choices.setdefault(parent, []).append(group)
            for json_name, type_name in names:
                if sd["kind"] == "resource" and parent == sd["type"] and name == "id":
                    type_name = "id"  # the snapshot says string; a resource id is an `id`
                self.types.setdefault(parent, {})[json_name] = [
                    type_name,
                    1 if element.get("max") != "1" else 0,
                    self._binding(element, type_name),
                ]

    def _json_names(self, element: Json, path: str, name: str) -> list[tuple[str, str]]:
        if "contentReference" in element:
            return [(name, element["contentReference"].lstrip("#"))]
        types = [element_type(t) for t in element.get("type", [])]
        if name.endswith("[x]"):
            base = name[:-3]
            return [(base + t[0].upper() + t[1:], t) for t in types]
        (type_name,) = types
        if type_name in ("BackboneElement", "Element"):
            return [(name, path)]  # children are defined under this path in the same snapshot
        return [(name, type_name)]

    def _binding(self, element: Json, type_name: str) -> int:
        binding = element.get("binding")
        if not binding or binding.get("strength") != "required" or "valueSet" not in binding:
            return -1
        if type_name not in ("code", "Coding", "CodeableConcept"):
            return -1
        url = binding["valueSet"].split("|")[0]
        if url not in self.vs_index:
            expansion = self.expander.expand(url)
            if expansion is None:
                self.unexpanded.add(url)
                return -1
            self.vs_index[url] = len(self.value_sets)
            self.value_sets.append([url, {s: sorted(c) for s, c in sorted(expansion.items())}])
        return self.vs_index[url]


def _value_regex(sd: Json) -> str | None:
    """The regex on the primitive's `value` (https://hl7.org/fhir/R4/datatypes.html#primitive)."""
    for element in sd["snapshot"]["element"]:
        if element["path"] == sd["id"] + ".value":
            for type_entry in element.get("type", []):
                for ext in type_entry.get("extension", []):
                    if ext["url"] == "http://hl7.org/fhir/StructureDefinition/regex":
                        return str(ext["valueString"])
    return None


def build(shared: Path) -> Json:
    definitions = shared / "fhir-r4" / "definitions"
    structures = load_bundle(definitions / "structuredefinitions.json")
    expander = ValueSetExpander(
        load_bundle(definitions / "valuesets.json"), load_bundle(definitions / "codesystems.json")
    )
    builder = SchemaBuilder(expander)
    primitives = sorted(sd["id"] for sd in structures if sd["kind"] == "primitive-type")
    for sd in structures:
        if sd["kind"] != "primitive-type":
            builder.add_structure(sd)
    # Element is not among the base definitions here; a primitive's `_name` object uses it.
    builder.types["Element"] = {"id": ["string", 0, -1], "extension": ["Extension", 1, -1]}
    regex = {sd["id"]: _value_regex(sd) for sd in structures if sd["kind"] == "primitive-type"}
    resources = sorted(sd["id"] for sd in structures if sd["kind"] == "resource" and not sd.get("abstract"))
    return {
        "fhirVersion": "4.0.1",
        "resources": resources,
        "primitives": primitives,
        "types": builder.types,
        "required": builder.required,
        "choices": builder.choices,
        "regex": {name: pattern for name, pattern in sorted(regex.items()) if pattern},
        "value_sets": builder.value_sets,
        "unexpanded": sorted(builder.unexpanded),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    schema = build(args.shared)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(schema, separators=(",", ":"), sort_keys=True).encode()
    with gzip.GzipFile(OUT, "wb", mtime=0) as out:  # mtime=0 keeps the output reproducible
        out.write(payload)
    print(
        f"wrote {OUT.relative_to(ROOT)}: {len(schema['types'])} types, "
        f"{len(schema['value_sets'])} required value sets, {len(schema['unexpanded'])} not expandable, "
        f"{len(payload)} bytes ({OUT.stat().st_size} gzipped)"
    )


if __name__ == "__main__":
    main()
