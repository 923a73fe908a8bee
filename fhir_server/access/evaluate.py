"""The AccessFilter evaluated in memory against one resource's extracted index entries.

Used where storage cannot answer: the NEW content of a write (not stored yet) and old versions
(vread, instance history), whose index entries storage no longer keeps. It must agree with the
storage adapters' translation of the same filter; tests/unit/test_access_evaluate.py checks it
against the SQLite index. Criteria kinds it cannot evaluate count as "no match" (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fhir_server.indexing.entries import IndexEntry, ReferenceEntry, StringEntry, TokenEntry, UriEntry
from fhir_server.indexing.extract import extract_entries, patient_compartments
from fhir_server.search.query import (
    AccessFilter,
    Clause,
    Criterion,
    MissingValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)

# (criteria, "Patient/1") -> does that patient meet the criteria? Resolved by the caller beforehand.
PatientCheck = Callable[[tuple[Criterion, ...], str], bool]


@dataclass(frozen=True, slots=True)
class ResourceView:
    """What a filter looks at: type, id, index entries, Patient compartments, security labels."""

    resource_type: str
    id: str
    entries: tuple[IndexEntry, ...]
    compartments: frozenset[str]
    in_own: bool = True  # a Patient counts as in its own compartment (False: judged in `compartments` only)

    def labels(self, system: str) -> frozenset[str | None]:
        return frozenset(
            e.code
            for e in self.entries
            if isinstance(e, TokenEntry) and e.param == "_security" and e.system == system
        )


def view_of(resource: Mapping[str, Any], entries: Sequence[IndexEntry] | None = None) -> ResourceView:
    found = tuple(extract_entries(resource) if entries is None else entries)
    compartments = frozenset(patient_compartments(resource, found))
    return ResourceView(str(resource["resourceType"]), str(resource.get("id", "")), found, compartments)


def never(_criteria: tuple[Criterion, ...], _patient: str) -> bool:
    return False


def allows(access: AccessFilter, view: ResourceView, patient_ok: PatientCheck = never) -> bool:
    """Does `view` pass `access`? Every field narrows; `any_of` needs one passing member."""
    return (
        _types_ok(access, view)
        and _compartments_ok(access, view)
        and _labels_ok(access, view)
        and all(_rule_ok(rule.resource_type, rule.any_of, view) for rule in access.extra)
        and _patients_ok(access, view, patient_ok)
        and (not access.any_of or any(allows(a, view, patient_ok) for a in access.any_of))
    )


def allows_in_every_compartment(
    access: AccessFilter, view: ResourceView, patient_ok: PatientCheck = never
) -> bool:
    """Writes: does `view` pass `access` in EACH Patient compartment it belongs to, judged one at a time?

    `allows` passes a resource in ANY compartment within reach (right for reads: it is in the
    caller's record). A write needs every one: an observation about another patient that names
    the caller as performer must not reach the other patient's record."""
    compartments = _own(view)
    if not compartments:
        return allows(access, view, patient_ok)
    return all(
        allows(access, replace(view, compartments=frozenset({c}), in_own=False), patient_ok)
        for c in sorted(compartments)
    )


def _types_ok(access: AccessFilter, view: ResourceView) -> bool:
    return access.types is None or view.resource_type in access.types


def _own(view: ResourceView) -> frozenset[str]:
    """A Patient is in its own compartment (whatever its links say)."""
    own = {f"Patient/{view.id}"} if view.resource_type == "Patient" and view.in_own else set()
    return view.compartments | own


def _compartments_ok(access: AccessFilter, view: ResourceView) -> bool:
    return access.compartments is None or bool(_own(view) & access.compartments)


def _labels_ok(access: AccessFilter, view: ResourceView) -> bool:
    if access.allowed_labels is None:
        return True
    carried = view.labels(access.label_system)
    if not carried:
        return access.allow_unlabeled
    allowed = {code for system, code in access.allowed_labels if system == access.label_system}
    return all(code is not None and code in allowed for code in carried)


def _patients_ok(access: AccessFilter, view: ResourceView, patient_ok: PatientCheck) -> bool:
    """A Patient is judged on its own (possibly new) content; others by the patients they belong to."""
    criteria = access.patient_criteria
    if not criteria:
        return True
    own = f"Patient/{view.id}"
    if view.resource_type == "Patient" and own in _own(view) and all(criterion_ok(c, view) for c in criteria):
        return True
    return any(patient_ok(criteria, c) for c in view.compartments - {own})


def _rule_ok(resource_type: str, any_of: tuple[tuple[Criterion, ...], ...], view: ResourceView) -> bool:
    if view.resource_type != resource_type:
        return True
    return any(all(criterion_ok(c, view) for c in group) for group in any_of)


# -- criteria ------------------------------------------------------------------------------------------


def criterion_ok(crit: Criterion, view: ResourceView) -> bool:
    """A criterion on the resource's own entries; chains and `_has` need storage: no match."""
    if not isinstance(crit, Clause):
        return False
    if crit.kind == "id":
        found = any(isinstance(v, TokenValue) and v.code == view.id for v in crit.values)
        return found != crit.negate
    entries = [e for e in view.entries if e.param == crit.param]
    missing = [v for v in crit.values if isinstance(v, MissingValue)]
    if missing:
        return (not entries) == missing[0].missing
    found = any(_value_ok(crit, v, e) for v in crit.values for e in entries)
    return found != crit.negate


def _value_ok(crit: Clause, value: Value, entry: IndexEntry) -> bool:
    if crit.kind == "token" and isinstance(value, TokenValue) and isinstance(entry, TokenEntry):
        return _token_ok(value, entry)
    if crit.kind == "reference" and isinstance(value, ReferenceValue) and isinstance(entry, ReferenceEntry):
        return _reference_ok(value, entry)
    if crit.kind == "uri" and isinstance(value, UriValue) and isinstance(entry, UriEntry):
        return value.match == "eq" and value.value == entry.value
    if crit.kind == "string" and isinstance(value, StringValue) and isinstance(entry, StringEntry):
        return _string_ok(value, entry)
    return False


def _token_ok(value: TokenValue, entry: TokenEntry) -> bool:
    if value.match == "text":
        return bool(entry.text and value.code and entry.text.startswith(value.code))
    if value.system is not None and (entry.system or "") != value.system:
        return False
    return value.code is None or entry.code == value.code


def _reference_ok(value: ReferenceValue, entry: ReferenceEntry) -> bool:
    if value.url is not None:
        return entry.url == value.url
    if value.target_id is None:
        return False  # :identifier and other forms: storage only
    type_ok = value.target_type is None or value.target_type == entry.target_type
    return type_ok and entry.target_id == value.target_id


def _string_ok(value: StringValue, entry: StringEntry) -> bool:
    if value.match == "exact":
        return entry.exact == value.exact
    if value.match == "contains":
        return value.value in entry.value
    return entry.value.startswith(value.value)
