"""Plain values the authorization server deals in: users, clients, launch contexts and access tokens."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any, Literal

from smart_auth import scopes as scope_rules

UserKind = Literal["patient", "carer", "clinician", "admin"]
TokenSubjectKind = Literal["patient", "carer", "clinician", "admin", "system"]
ClientAuthMethod = Literal["none", "client_secret_basic", "private_key_jwt"]
USER_KINDS: tuple[UserKind, ...] = ("patient", "carer", "clinician", "admin")
AUTH_METHODS: tuple[ClientAuthMethod, ...] = ("none", "client_secret_basic", "private_key_jwt")


@dataclass(frozen=True)
class AccessToken:
    """What a verified bearer token says. The FHIR side narrows every request by these fields."""

    client_id: str
    sub: str  # the user id, or the client id for Backend Services
    scopes: tuple[str, ...]  # as granted, exact strings
    patient: str | None  # launch context Patient id
    encounter: str | None
    fhir_user: str | None  # relative: "Patient/1", "RelatedPerson/x", "Person/x", "Practitioner/y"
    user_kind: TokenSubjectKind
    organization: str | None  # clinicians: their Organization id
    jti: str
    exp: int
    iat: int = 0


@dataclass(frozen=True)
class PatientChoice:
    """One patient a user may act for, as offered by the patient picker."""

    id: str
    display: str = ""


@dataclass(frozen=True)
class User:
    id: str
    username: str
    kind: UserKind
    fhir_user: str | None = None  # e.g. "Patient/1", "RelatedPerson/r1", "Person/p1", "Practitioner/d1"
    patient_id: str | None = None  # patients: the Patient they are
    organization: str | None = None  # clinicians: the Organization they work for
    patients: tuple[str, ...] = ()  # carers: patients they act for (when no provider is wired)
    display: str = ""
    disabled: bool = False


@dataclass(frozen=True)
class Client:
    """A registered app. Implements the parts of authlib's ClientMixin that the grants call."""

    client_id: str
    name: str
    auth_method: ClientAuthMethod
    redirect_uris: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()  # allowed scopes (Backend Services: the pre-authorised system/ scopes)
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    launch_types: tuple[str, ...] = ("standalone", "ehr")
    secret_hash: str | None = field(default=None, repr=False)
    jwks: dict[str, Any] | None = field(default=None, repr=False)
    jwks_uri: str | None = None
    can_introspect: bool = False  # resource servers may introspect any token; others only their own
    disabled: bool = False

    # --- authlib ClientMixin ---
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # Only with exactly one registered URI may a request leave redirect_uri out.
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        granted = scope_rules.within(scope_rules.split(scope), self.scopes)
        return " ".join(granted) if granted else None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match, no prefixes or wildcards

    def check_client_secret(self, client_secret: str) -> bool:
        from smart_auth.passwords import secret_digest

        if self.secret_hash is None:
            return False
        return hmac.compare_digest(self.secret_hash, secret_digest(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    @property
    def is_confidential(self) -> bool:
        return self.auth_method != "none"


@dataclass(frozen=True)
class LaunchContext:
    """An EHR launch: the context a clinician's EHR hands to an app through the `launch` parameter."""

    id: str
    patient: str | None
    encounter: str | None
    user_id: str | None  # when set, only this user may use the launch
    need_patient_banner: bool
    expires: int
