"""Access decisions as plain functions of values: who is asking (a `Caller`) and what they ask for.

Two levels, both decided here and applied elsewhere:
1. Interaction level: does any usable scope allow this interaction on this type? No -> 403 naming
   the scope that is missing (`missing_scope`).
2. Resource level: `filter_for(caller, letter)` is the `AccessFilter` the storage applies INSIDE the
   query (matches, totals, paging, includes, chains, `_has`), and that instance checks evaluate
   against one resource (`fhir_server.access.evaluate` in memory, or an `_id` search in storage).

The filter is a union (AccessFilter.any_of) of "role part AND scope part" pairs:
- role parts: what the person may reach at all — a patient their own compartment; a carer or
  professional one part per active Consent grant (that patient's compartment, the granted privacy
  labels, unlabeled items only with every label); a clinician the patients their organisation
  manages (plus their grants); a backend system client everything.
- scope parts: what the token allows — one part per group of non-granular scopes of a context (types),
  one per granular scope (its type + a TypeRule with its criteria); a `patient/` scope is further
  narrowed to the token's launch patient.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

from fhir_server.access.scopes import Letter, Scope
from fhir_server.search.query import AccessFilter, Clause, Criterion, ReferenceValue, TypeRule

_T = TypeVar("_T")
Role = Literal["patient", "carer", "clinician", "admin", "system"]
Interaction = Literal["read", "vread", "history", "search", "create", "update", "patch", "delete"]

PRIVACY_LABEL_SYSTEM = "http://fhir.patientsknowbest.com/codesystem/privacy-label"
PRIVACY_LABELS = frozenset({"GENERAL_HEALTH", "MENTAL_HEALTH", "SEXUAL_HEALTH", "SOCIAL_CARE"})

LETTER: dict[Interaction, Letter] = {
    "read": "r",
    "vread": "r",
    "history": "r",
    "search": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
}
# A filter nothing passes (an empty type set is FALSE in every adapter).
DENY = AccessFilter(types=frozenset())
# Demographics are owned by the source systems (GP / hospital PAS): portal users never write them.
SOURCE_OWNED_TYPES = frozenset({"Patient"})
# The Consents that share a record (portal.md, Sharing): written by the patient, or the back office.
SHARING_TYPES = frozenset({"Consent"})
SHARING_WRITERS: frozenset[Role] = frozenset({"patient", "system"})


@dataclass(frozen=True, slots=True)
class Grant:
    """One active Consent grant: `patient` ("Patient/1") shares `labels` (codes), read or read+add."""

    patient: str
    labels: frozenset[str]
    can_add: bool
    consent_id: str = ""


@dataclass(frozen=True, slots=True)
class Caller:
    """Everything a decision needs about the requester, already verified and loaded."""

    role: Role
    scopes: tuple[Scope, ...]
    own_patient: str | None = None  # a patient user: "Patient/<own id>"
    launch_patient: str | None = None  # the token's patient context, "Patient/<id>"
    organization: str | None = None  # clinicians: "Organization/<id>"
    grants: tuple[Grant, ...] = field(default_factory=tuple)


# -- interaction level -----------------------------------------------------------------------------


def usable_scopes(caller: Caller) -> tuple[Scope, ...]:
    """Backend clients act through `system/` scopes only; people through `patient/` and `user/`."""
    if caller.role == "system":
        return tuple(s for s in caller.scopes if s.context == "system")
    return tuple(s for s in caller.scopes if s.context != "system")


def covering(caller: Caller, letter: Letter, resource_type: str | None) -> tuple[Scope, ...]:
    """Usable scopes allowing `letter` on `resource_type` (None: on some type, for system searches)."""
    return tuple(
        s
        for s in usable_scopes(caller)
        if letter in s.letters and (resource_type is None or s.covers(resource_type, letter))
    )


def missing_scope(caller: Caller, interaction: Interaction, resource_type: str | None) -> str | None:
    """None when some scope allows the interaction; otherwise a message naming the scope needed."""
    letter = LETTER[interaction]
    if covering(caller, letter, resource_type):
        return None
    context = "system" if caller.role == "system" else "patient|user"
    return (
        f"The access token has no scope allowing {interaction} on {resource_type or 'any type'}; "
        f"it needs e.g. {context}/{resource_type or '*'}.{letter}"
    )


def append_only(caller: Caller, letter: Letter, resource_type: str) -> bool:
    """The audit trail is never changed or removed through the API; only backend systems add to it."""
    if resource_type != "AuditEvent":
        return False
    return letter in "ud" or (letter == "c" and caller.role != "system")


def source_owned(caller: Caller, letter: Letter, resource_type: str) -> bool:
    """True when a portal user tries to write what the source systems own (demographics)."""
    return caller.role in ("patient", "carer") and letter in "cud" and resource_type in SOURCE_OWNED_TYPES


def chooses_ids(caller: Caller) -> bool:
    """May a PUT of this caller create a resource at an id it names (update-as-create)?

    Not for portal users (patients, carers): answering "created" for an unknown id but "refused"
    for another patient's (or a deleted) one would tell them which ids exist, and a PUT would take
    over a deleted id with its history. They create with POST; clinicians and backends keep PUT."""
    return caller.role not in ("patient", "carer")


def shares_record(caller: Caller, letter: Letter, resource_type: str) -> bool:
    """True when someone other than the patient (or a backend system) writes a sharing Consent.

    Grants are read from every stored Consent (consent.py), so whoever may write one decides who
    sees the record: a carer could widen their own grant, a clinician let in an outsider. Only the
    patient (within their own compartment, as every write of theirs) and backend clients with
    system/ write scopes (the portal back office) may create, change or delete them."""
    return letter in "cud" and resource_type in SHARING_TYPES and caller.role not in SHARING_WRITERS


# -- resource level ----------------------------------------------------------------------------------


def filter_for(caller: Caller, letter: Letter) -> AccessFilter:
    """The one AccessFilter for every resource this caller may `letter` (DENY when none)."""
    pairs = [
        merged
        for role in role_parts(caller, letter)
        for scope in scope_parts(caller, letter)
        if (merged := merge(role, scope)) is not None
    ]
    return union(pairs)


def union(parts: Sequence[AccessFilter]) -> AccessFilter:
    """One filter passing what any part passes; a single part stays flat (the common case)."""
    if not parts:
        return DENY
    if len(parts) == 1:
        return parts[0]
    return AccessFilter(any_of=tuple(parts))


def role_parts(caller: Caller, letter: Letter) -> list[AccessFilter]:
    """What the person may reach at all, whatever the token says."""
    if caller.role == "system":
        return [AccessFilter()]
    if caller.role == "patient":
        return [AccessFilter(compartments=frozenset({caller.own_patient}))] if caller.own_patient else []
    parts = [grant_part(g) for g in caller.grants if letter in "rs" or (g.can_add and letter in "cu")]
    if letter in "rs":  # whom they care for: the Patient's own demographics, whatever labels were granted
        parts += [
            AccessFilter(types=frozenset({"Patient"}), compartments=frozenset({g.patient}))
            for g in caller.grants
        ]
    if caller.role in ("clinician", "admin") and caller.organization:
        parts.append(AccessFilter(patient_criteria=(managed_by(caller.organization),)))
    return parts


def grant_part(grant: Grant) -> AccessFilter:
    """A Consent grant: that patient's compartment, the granted labels; unlabeled only with all."""
    return AccessFilter(
        compartments=frozenset({grant.patient}),
        allowed_labels=frozenset((PRIVACY_LABEL_SYSTEM, code) for code in grant.labels),
        label_system=PRIVACY_LABEL_SYSTEM,
        allow_unlabeled=grant.labels >= PRIVACY_LABELS,
    )


def managed_by(organization: str) -> Criterion:
    """Patient.managingOrganization = the clinician's organisation (search parameter `organization`)."""
    org_type, _, org_id = organization.partition("/")
    return Clause("organization", "reference", (ReferenceValue(target_type=org_type, target_id=org_id),))


def scope_parts(caller: Caller, letter: Letter) -> list[AccessFilter]:
    """What the token allows for `letter`: plain scopes grouped by context, granular ones alone."""
    scopes = [s for s in usable_scopes(caller) if letter in s.letters]
    parts: list[AccessFilter] = []
    for context in ("patient", "user", "system"):
        plain = [s for s in scopes if s.context == context and not s.granular]
        if plain:
            parts.append(_narrow(caller, context, AccessFilter(types=_types(plain))))
    for scope in scopes:
        if scope.granular:
            rule = TypeRule(scope.resource_type, (scope.criteria,))
            base = AccessFilter(types=frozenset({scope.resource_type}), extra=(rule,))
            parts.append(_narrow(caller, scope.context, base))
    return parts


def _types(scopes: Iterable[Scope]) -> frozenset[str] | None:
    names = {s.resource_type for s in scopes}
    return None if "*" in names else frozenset(names)


def _narrow(caller: Caller, context: str, part: AccessFilter) -> AccessFilter:
    """A `patient/` scope reaches only the token's launch patient (none given: nothing)."""
    if context != "patient":
        return part
    if caller.launch_patient is None:
        return DENY
    return replace(part, compartments=frozenset({caller.launch_patient}))


# -- combining filters ---------------------------------------------------------------------------------


def merge(a: AccessFilter, b: AccessFilter) -> AccessFilter | None:
    """A filter passing what both pass (None: nothing can). Neither may use `any_of`."""
    if a.any_of or b.any_of:
        raise ValueError("merge takes flat filters; combine unions with filter_for")
    if a.allowed_labels is not None and b.allowed_labels is not None and a.label_system != b.label_system:
        raise ValueError("cannot intersect label sets of different systems")
    types = _meet(a.types, b.types)
    compartments = _meet(a.compartments, b.compartments)
    if types == frozenset() or compartments == frozenset():
        return None
    labelled = a if a.allowed_labels is not None else b
    return AccessFilter(
        types=types,
        compartments=compartments,
        allowed_labels=_meet(a.allowed_labels, b.allowed_labels),
        label_system=labelled.label_system,
        # allow_unlabeled means something only beside a label set (None: no label rule at all).
        allow_unlabeled=all(f.allow_unlabeled for f in (a, b) if f.allowed_labels is not None),
        extra=a.extra + b.extra,
        patient_criteria=a.patient_criteria + b.patient_criteria,
    )


def _meet(a: frozenset[_T] | None, b: frozenset[_T] | None) -> frozenset[_T] | None:
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def is_denied(access: AccessFilter) -> bool:
    return access == DENY


def types_only(access: AccessFilter) -> bool:
    """True when the filter narrows by resource type alone (type/system history can honour that)."""
    return (
        access.compartments is None
        and access.allowed_labels is None
        and not access.extra
        and not access.patient_criteria
        and not access.any_of
    )
