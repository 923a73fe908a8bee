"""What the fhir.resources models miss, checked in one walk over the JSON against the R4 definitions.

- JSON shape (https://hl7.org/fhir/R4/json.html): arrays exactly where the element repeats, no empty
  arrays, no `null` (except inside a primitive array aligned with its `_name` array), booleans and
  numbers as JSON booleans and numbers (the models would turn "yes" into true).
- ele-1 (https://hl7.org/fhir/R4/element.html#invs): no empty objects, empty or whitespace-only strings.
- `id` syntax (https://hl7.org/fhir/R4/datatypes.html#id).
- Required value-set bindings (https://hl7.org/fhir/R4/terminologies.html#required) on code, Coding
  and CodeableConcept, wherever the bound type appears (e.g. HumanName.use inside any resource).
- Unknown elements, named by their path; contained and Bundle entry resources by their own type.
"""

from __future__ import annotations

import re
import sys
from decimal import Decimal
from typing import Any

from fhir_server.errors import Issue
from fhir_server.validation.schema import INTEGER_TYPES, ElementSpec, Schema, ValueSet, load_schema

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # integer is a signed 32-bit value in R4
# A decimal's magnitude at most that of the largest double: searches index decimals as doubles, and
# JSON readers in general (and clients) cannot hold more, so a larger one is refused, not stored.
DOUBLE_MAX = Decimal(sys.float_info.max)
BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
NO_SPACE = str.maketrans("", "", " \t\r\n")
FORMAT_HINTS = {
    "id": "1-64 of A-Z a-z 0-9 - .",
    "date": "YYYY, YYYY-MM or YYYY-MM-DD",
    "dateTime": "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone",
    "instant": "YYYY-MM-DDThh:mm:ss(.sss) with a time zone",
    "time": "hh:mm:ss",
    "code": "no leading, trailing or double whitespace",
    "uri": "no whitespace",
    "url": "no whitespace",
    "canonical": "no whitespace",
    "oid": "urn:oid:1.2.3...",
    "uuid": "urn:uuid: and a lower-case UUID",
    "base64Binary": "base64 characters in groups of four",
}
ELEMENT = "Element"  # the type of a primitive's `_name` companion (id + extension)

# R4 types whose R4B model has a different shape, so no R4 instance can satisfy both.
R4B_INCOMPATIBLE = frozenset({"Evidence"})


def unsupported_message(resource_type: str) -> str:
    """Said of R4 types that the R4B models lack (MedicinalProduct*, ...) or define differently (Evidence)."""
    return f"{resource_type} is an R4 type this server does not support"


def _show(value: Any) -> str:
    """A short rendering of a JSON value for messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class StructureWalker:
    """Collects every problem found; one instance per validated resource."""

    def __init__(self, supported: frozenset[str], schema: Schema | None = None) -> None:
        self.schema = schema or load_schema()
        self.supported = supported
        self.issues: list[Issue] = []

    def report(self, path: str, message: str, code: str = "invalid") -> None:
        self.issues.append(Issue(f"{path}: {message}", code=code, expression=(path,)))

    # -- resources ---------------------------------------------------------------------------
    def resource(self, value: dict[str, Any], resource_type: str, path: str) -> None:
        """Walk a resource whose resourceType is already known to be supported."""
        self.object(value, resource_type, path, is_resource=True)

    def nested_resource(self, value: Any, path: str) -> None:
        """contained[], Bundle.entry.resource, Parameters.parameter.resource: dispatch on resourceType."""
        if not isinstance(value, dict):
            self.report(path, f"expected a resource (JSON object), got {_show(value)}", "structure")
            return
        resource_type = value.get("resourceType")
        if not isinstance(resource_type, str):
            self.report(path, "a resource needs a resourceType", "required")
        elif resource_type in self.supported:
            self.resource(value, resource_type, path)
        elif resource_type in self.schema.resources:
            self.report(path, unsupported_message(resource_type), "not-supported")
        else:
            self.report(path, f"unknown resourceType {_show(resource_type)}", "structure")

    # -- complex values ----------------------------------------------------------------------
    def object(self, value: dict[str, Any], type_name: str, path: str, is_resource: bool = False) -> None:
        if not value:
            self.report(path, "empty object: an element needs a value or children (ele-1)", "invariant")
            return
        props = self.schema.types[type_name]
        for key, item in value.items():
            if key == "resourceType" and is_resource:
                continue
            spec = props.get(key)
            if spec is not None:
                self.property(value, key, item, spec, f"{path}.{key}")
            elif key.startswith("_") and (base := props.get(key[1:])) is not None and base.primitive:
                self.companion(value, key, item, base, f"{path}.{key}")
            else:
                self.report(f"{path}.{key}", f"unknown element {key!r} for {type_name}", "structure")
        self.cardinality(value, type_name, path)

    def cardinality(self, value: dict[str, Any], type_name: str, path: str) -> None:
        """min >= 1 elements present (a primitive may be present by its `_name` alone); one choice of [x]."""
        for name, names in self.schema.required.get(type_name, ()):
            if not any(n in value or "_" + n in value for n in names):
                self.report(f"{path}.{name}", "required element is missing", "required")
        for name, names in self.schema.choices.get(type_name, ()):
            present = [n for n in names if n in value or "_" + n in value]
            if len(present) > 1:
                self.report(f"{path}.{name}", f"only one of {', '.join(present)} may be present", "structure")

    def property(self, owner: dict[str, Any], key: str, value: Any, spec: ElementSpec, path: str) -> None:
        if not spec.is_array:
            if isinstance(value, list):
                self.report(path, "must be a single value, not an array (it does not repeat)", "structure")
            else:
                self.value(value, spec, path)
            return
        if not self.array_shape(value, path):
            return
        companions = owner.get("_" + key)
        for index, item in enumerate(value):
            if item is None and spec.primitive and _has_item(companions, index):
                continue  # the value lives only in the aligned `_key` entry (json.html#primitive)
            self.value(item, spec, f"{path}[{index}]")

    def companion(self, owner: dict[str, Any], key: str, value: Any, base: ElementSpec, path: str) -> None:
        """`_name`: the id/extensions of a primitive, aligned with `name` when it repeats."""
        if not base.is_array:
            if isinstance(value, dict):
                self.object(value, ELEMENT, path)
            else:
                self.report(path, f"expected a JSON object (id/extension), got {_show(value)}", "structure")
            return
        if not self.array_shape(value, path):
            return
        values = owner.get(key[1:])
        for index, item in enumerate(value):
            if item is None and _has_item(values, index):
                continue
            if isinstance(item, dict):
                self.object(item, ELEMENT, f"{path}[{index}]")
            else:
                self.report(f"{path}[{index}]", f"expected a JSON object, got {_show(item)}", "structure")

    def array_shape(self, value: Any, path: str) -> bool:
        if not isinstance(value, list):
            self.report(path, f"must be an array (the element repeats), got {_show(value)}", "structure")
            return False
        if not value:
            self.report(path, "empty array: omit the element instead (json.html)", "invariant")
            return False
        return True

    def value(self, value: Any, spec: ElementSpec, path: str) -> None:
        if value is None:
            self.report(path, "null is not allowed in FHIR JSON: omit the element instead", "structure")
        elif spec.primitive:
            self.primitive(value, spec, path)
        elif spec.type == "Resource":
            self.nested_resource(value, path)
        elif not isinstance(value, dict):
            self.report(path, f"expected a {spec.type} (JSON object), got {_show(value)}", "structure")
        else:
            self.object(value, spec.type, path)
            if spec.value_set is not None and value:
                self.coded(value, spec.type, spec.value_set, path)

    # -- primitives and codes ----------------------------------------------------------------
    def primitive(self, value: Any, spec: ElementSpec, path: str) -> None:
        kind = spec.type
        if kind == "boolean":
            if type(value) is not bool:
                self.report(path, f"expected a JSON boolean (true/false), got {_show(value)}", "structure")
        elif kind in INTEGER_TYPES:
            self.integer(value, kind, path)
        elif kind == "decimal":
            self.decimal(value, path)
        elif type(value) is not str:
            self.report(path, f"expected a JSON string ({kind}), got {_show(value)}", "structure")
        elif not value.strip():
            self.report(
                path, "empty or whitespace-only string: omit the element instead (ele-1)", "invariant"
            )
        elif not self.well_formed(kind, value):
            hint = FORMAT_HINTS.get(kind, "see https://hl7.org/fhir/R4/datatypes.html")
            self.report(path, f"{_show(value)} is not a valid {kind} ({hint})", "value")
        elif spec.value_set is not None and value not in spec.value_set.codes:
            self.report(
                path,
                f"{_show(value)} is not in the required value set {spec.value_set.describe()}",
                "code-invalid",
            )

    def decimal(self, value: Any, path: str) -> None:
        if type(value) not in (int, float, Decimal):  # Decimal: precision-keeping parse
            self.report(path, f"expected a JSON number (decimal), got {_show(value)}", "structure")
        elif not (value == value and abs(value) <= DOUBLE_MAX):  # NaN is not equal to itself
            text = str(value) if len(str(value)) <= 30 else str(value)[:27] + "..."
            self.report(
                path, f"{text} is out of range: a decimal may be at most ±{sys.float_info.max}", "value"
            )

    def integer(self, value: Any, kind: str, path: str) -> None:
        if type(value) is not int:
            self.report(path, f"expected a JSON integer ({kind}), got {_show(value)}", "structure")
            return
        low = {"integer": INT32_MIN, "positiveInt": 1, "unsignedInt": 0}[kind]
        if not low <= value <= INT32_MAX:
            self.report(path, f"{value} is out of range for {kind} ({low}..{INT32_MAX})", "value")

    def well_formed(self, kind: str, value: str) -> bool:
        if kind == "base64Binary":
            return BASE64.fullmatch(value) is not None and len(value.translate(NO_SPACE)) % 4 == 0
        pattern = self.schema.patterns.get(kind)
        return pattern is None or pattern.fullmatch(value) is not None

    def coded(self, value: dict[str, Any], type_name: str, value_set: ValueSet, path: str) -> None:
        """Coding: a code from a system of the set must be in it. CodeableConcept: one coding must be."""
        if type_name == "Coding":
            if _coding_from(value, value_set) is False:
                self.report(
                    f"{path}.code",
                    f"{_show(value.get('code'))} is not in the required value set {value_set.describe()}",
                    "code-invalid",
                )
            return
        codings = value.get("coding")
        if isinstance(codings, list) and codings and not any(_coding_from(c, value_set) for c in codings):
            self.report(
                f"{path}.coding",
                f"no coding is from the required value set {value_set.describe()}",
                "code-invalid",
            )


def _has_item(values: Any, index: int) -> bool:
    return isinstance(values, list) and index < len(values) and values[index] is not None


def _coding_from(coding: Any, value_set: ValueSet) -> bool | None:
    """True/False when the coding's system belongs to the set; None when it names another system."""
    if not isinstance(coding, dict):
        return None
    codes = value_set.by_system.get(coding.get("system"))  # type: ignore[arg-type]
    if codes is None:
        return None
    return coding.get("code") in codes
