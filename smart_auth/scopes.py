"""SMART scopes, v1 and v2, as far as the authorization server needs them.

https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html

The server grants scope strings exactly as the app asked for them (v1 scopes are echoed as v1), so
parsing here only answers two questions: is a scope well formed, and does a registered (allowed or
pre-authorised) scope cover a requested one. Query narrowing is the FHIR side's business; a granular
scope is well formed only with simple criteria (no chains, `_has`, `_list`: `simple_criteria`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

CONTEXTS = ("patient", "user", "system")
# Scopes that are not about FHIR resources and that this server understands. `auth-admin` (the admin
# HTTP API) is granted only to users of kind admin.
ADMIN_SCOPE = "auth-admin"
NON_CLINICAL = frozenset(
    {
        "openid",
        "fhirUser",
        "profile",
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
        ADMIN_SCOPE,
    }
)
_V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
_CLINICAL = re.compile(r"^(patient|user|system)/([A-Z][A-Za-z]*|\*)\.([a-z*]+)(?:\?(.+))?$")
_V2_PERMISSIONS = re.compile(r"^c?r?u?d?s?$")
# One granular criterion: a parameter of the type itself, `code` or `code:modifier`, or one of the
# `_` parameters judged on the resource's own data. No chains (`a.b`), `_has`, `_list`, result
# parameters: the resource server judges scope criteria outside the caller's reach.
_SIMPLE_PARAM = re.compile(r"(?:[a-z][A-Za-z0-9-]*|_id|_security|_tag)(?::[A-Za-z][A-Za-z-]*)?")
_LOOKUP_MODIFIERS = frozenset({"in", "not-in"})  # a value set: another resource again


@dataclass(frozen=True, slots=True)
class ClinicalScope:
    """A parsed `context/Type.permissions[?query]` scope; `permissions` in v2 letters."""

    context: str
    resource_type: str  # a FHIR type or "*"
    permissions: frozenset[str]
    query: str | None
    v1: bool


def parse_clinical(scope: str) -> ClinicalScope | None:
    """Parse a v1 or v2 resource scope; None when `scope` is not one (or is malformed)."""
    match = _CLINICAL.match(scope)
    if not match:
        return None
    context, resource_type, permissions, query = match.groups()
    if permissions in _V1_PERMISSIONS:
        if query is not None:
            return None  # v1 has no granular form
        return ClinicalScope(context, resource_type, frozenset(_V1_PERMISSIONS[permissions]), None, True)
    if not _V2_PERMISSIONS.match(permissions):
        return None  # v2 letters must appear in c r u d s order
    if query is not None and not simple_criteria(query):
        return None
    return ClinicalScope(context, resource_type, frozenset(permissions), query, False)


def simple_criteria(query: str) -> bool:
    """Whether a granular scope's `param=value&...` names only simple parameters, each with a value.

    SMART granular scopes are `category=` / `code=`-style filters. Whether each parameter exists for
    the type is the resource server's business (it grants nothing for one it does not know).
    """
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return False
    return bool(pairs) and all(
        value and _SIMPLE_PARAM.fullmatch(name) and name.partition(":")[2] not in _LOOKUP_MODIFIERS
        for name, value in pairs
    )


def is_known(scope: str) -> bool:
    """Whether this server understands `scope` (other scopes are dropped from a grant)."""
    return scope in NON_CLINICAL or parse_clinical(scope) is not None


def covers(allowed: str, requested: str) -> bool:
    """Whether a registered scope `allowed` permits granting `requested`.

    `system/*.rs` covers `system/Patient.read` and `system/Observation.rs?category=...`;
    a granular allowed scope covers only the same query.
    """
    if allowed == requested:
        return True
    have, want = parse_clinical(allowed), parse_clinical(requested)
    if have is None or want is None or have.context != want.context:
        return False
    if have.resource_type not in ("*", want.resource_type):
        return False
    if have.query is not None and have.query != want.query:
        return False
    return want.permissions <= have.permissions


def split(scope: str | None) -> list[str]:
    """A scope parameter as a list, first occurrence of each scope kept, in the order given."""
    return list(dict.fromkeys((scope or "").split()))


def within(requested: list[str], allowed: tuple[str, ...] | list[str]) -> list[str]:
    """The requested scopes that some allowed scope covers, in request order."""
    return [s for s in requested if is_known(s) and any(covers(a, s) for a in allowed)]


def wants_patient_context(scopes: list[str]) -> bool:
    """A standalone launch must establish a patient when `launch/patient` or any patient/ scope is asked."""
    return "launch/patient" in scopes or any(s.startswith("patient/") for s in scopes)


def needs_refresh_token(scopes: list[str] | tuple[str, ...]) -> bool:
    return "offline_access" in scopes or "online_access" in scopes
