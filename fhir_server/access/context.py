"""The caller of one request: built from a verified token plus the Consent grants in force now.

`RequestContext.access` holds an `AccessContext`; the REST layer asks it for the filter of an
interaction letter (`filter(letter)`), and the search layer reads `search_filter`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from fhir_server.access.consent import actors_of, load_grants
from fhir_server.access.policy import Caller, Grant, Role, filter_for
from fhir_server.access.scopes import Letter, data_scopes
from fhir_server.search.query import AccessFilter
from fhir_server.storage.port import Store


class TokenClaims(Protocol):
    """What the FHIR side reads from a verified token (smart_auth.models.AccessToken has these)."""

    @property
    def client_id(self) -> str: ...
    @property
    def sub(self) -> str: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...
    @property
    def patient(self) -> str | None: ...
    @property
    def fhir_user(self) -> str | None: ...
    @property
    def user_kind(self) -> str: ...
    @property
    def organization(self) -> str | None: ...


@dataclass
class AccessContext:
    """One request's caller, with its filters computed once per letter."""

    caller: Caller
    client_id: str = ""
    user: str = ""  # fhirUser or sub: who, for the audit trail
    _filters: dict[str, AccessFilter] = field(default_factory=dict, repr=False)

    def filter(self, letter: Letter) -> AccessFilter:
        if letter not in self._filters:
            self._filters[letter] = filter_for(self.caller, letter)
        return self._filters[letter]

    @property
    def search_filter(self) -> AccessFilter:
        return self.filter("s")

    @property
    def audited(self) -> bool:
        """Clinicians' and carers' accesses are shown to the patient (portal: who saw what)."""
        return self.caller.role in ("carer", "clinician", "admin")


def _reference(kind: str, value: str | None) -> str | None:
    """`1` or `Patient/1` -> `Patient/1`."""
    if not value:
        return None
    return value if value.startswith(f"{kind}/") else f"{kind}/{value}"


def role_of(user_kind: str) -> Role:
    """Unknown kinds act with the least reach: a carer with no grants sees nothing."""
    known: tuple[Role, ...] = ("patient", "carer", "clinician", "admin", "system")
    return next((r for r in known if r == user_kind), "carer")


def own_patient(token: TokenClaims) -> str | None:
    if token.fhir_user and token.fhir_user.startswith("Patient/"):
        return token.fhir_user
    return _reference("Patient", token.patient)


async def build_access(store: Store, token: TokenClaims, now: datetime) -> AccessContext:
    """Who is asking, what the token grants and which Consents are in force — per request."""
    role = role_of(token.user_kind)
    grants: tuple[Grant, ...] = ()
    if role in ("carer", "clinician", "admin"):
        grants = await load_grants(store, await actors_of(store, token.fhir_user), now)
    caller = Caller(
        role=role,
        scopes=data_scopes(token.scopes),
        own_patient=own_patient(token) if role == "patient" else None,
        launch_patient=_reference("Patient", token.patient),
        organization=_reference("Organization", token.organization),
        grants=grants,
    )
    return AccessContext(caller, token.client_id, token.fhir_user or token.sub)
