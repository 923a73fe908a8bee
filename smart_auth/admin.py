"""Managing users, clients and keys: the API behind the CLI and the AuthService methods.

Disabling a user or client, resetting a password and "revoke all tokens" take effect on the very next
request: the user's or client's access tokens are revoked and their refresh tokens refused.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

from smart_auth import scopes as scope_rules
from smart_auth.errors import BadRequest, Conflict, NotFound
from smart_auth.models import USER_KINDS, Client, ClientAuthMethod, LaunchContext, User, UserKind
from smart_auth.passwords import hash_password, new_secret, secret_digest
from smart_auth.revocations import RevocationList
from smart_auth.store import AuthStore

CLIENT_KINDS = ("public", "symmetric", "asymmetric", "backend")
_AUTH_METHOD: dict[str, ClientAuthMethod] = {
    "public": "none",
    "symmetric": "client_secret_basic",
    "asymmetric": "private_key_jwt",
    "backend": "private_key_jwt",
}
# What a user-facing app may ask for when registered without an explicit list.
DEFAULT_APP_SCOPES = (
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "user/*.cruds",
)
_FHIR_USER_TYPES = {
    "patient": ("Patient",),
    "carer": ("RelatedPerson", "Person"),
    "clinician": ("Practitioner",),
    "admin": ("Practitioner", "Person"),
}


class AuthAdmin:
    def __init__(
        self, store: AuthStore, revocations: RevocationList, password_profile: str = "RFC_9106_LOW_MEMORY"
    ) -> None:
        self.store = store
        self.revocations = revocations
        self.password_profile = password_profile

    @classmethod
    def open(cls, db_path: Path) -> AuthAdmin:
        """For the CLI: the management API on an auth DB, without running the server."""
        store = AuthStore(db_path)
        store.open()
        revocations = RevocationList(store)
        revocations.load()
        return cls(store, revocations)

    def close(self) -> None:
        self.store.close()

    # --- users ---
    async def create_user(
        self,
        username: str,
        password: str,
        kind: UserKind,
        *,
        fhir_user: str | None = None,
        patient_id: str | None = None,
        organization: str | None = None,
        patients: tuple[str, ...] = (),
        display: str = "",
        user_id: str | None = None,
    ) -> User:
        user = _new_user(username, kind, fhir_user, patient_id, organization, patients, display, user_id)
        if len(password) < 8:
            raise BadRequest("a password needs at least 8 characters")
        password_hash = await asyncio.to_thread(hash_password, password, self.password_profile)
        if self.store.user_login(username) is not None or self.store.user(user.id) is not None:
            raise Conflict(f"username {username!r} or id {user.id!r} is taken")
        self.store.insert_user(user, password_hash, int(time.time()))
        return user

    def get_user(self, user_id: str) -> User:
        user = self.store.user(user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}")
        return user

    def find_user(self, username: str) -> User | None:
        found = self.store.user_login(username)
        return found[0] if found else None

    def list_users(self) -> list[User]:
        return self.store.users()

    async def set_user_disabled(self, user_id: str, disabled: bool) -> None:
        self._update_user(user_id, disabled=int(disabled))
        if disabled:
            self.revoke_user_tokens(user_id)

    async def reset_password(self, user_id: str, password: str) -> None:
        if len(password) < 8:
            raise BadRequest("a password needs at least 8 characters")
        password_hash = await asyncio.to_thread(hash_password, password, self.password_profile)
        self._update_user(user_id, password_hash=password_hash, failed_logins=0, locked_until=0)
        self.revoke_user_tokens(user_id)  # whoever knew the old password may hold tokens

    def unlock_user(self, user_id: str) -> None:
        self._update_user(user_id, failed_logins=0, locked_until=0)

    def set_user_patients(self, user_id: str, patients: tuple[str, ...]) -> None:
        self._update_user(user_id, patients=patients)

    def revoke_user_tokens(self, user_id: str) -> None:
        self.revocations.revoke(self.store.access_of(sub=user_id))
        self.store.revoke_refresh(user_id=user_id)

    def _update_user(self, user_id: str, **values: Any) -> None:
        if not self.store.update_user(user_id, **values):
            raise NotFound(f"no user {user_id!r}")

    # --- clients ---
    def create_client(
        self,
        name: str,
        kind: str,
        *,
        redirect_uris: tuple[str, ...] = (),
        scopes: tuple[str, ...] | None = None,
        jwks: dict[str, Any] | None = None,
        jwks_uri: str | None = None,
        launch_types: tuple[str, ...] = ("standalone", "ehr"),
        client_id: str | None = None,
        can_introspect: bool = False,
    ) -> tuple[Client, str | None]:
        """Register an app. Returns the client and, for `symmetric` clients, the secret (shown once)."""
        if kind not in CLIENT_KINDS:
            raise BadRequest(f"client kind must be one of {', '.join(CLIENT_KINDS)}")
        _check_client(kind, redirect_uris, scopes, jwks, jwks_uri)
        secret = new_secret() if kind == "symmetric" else None
        client = Client(
            client_id=client_id or secrets.token_urlsafe(12),
            name=name,
            auth_method=_AUTH_METHOD[kind],
            redirect_uris=tuple(redirect_uris),
            scopes=tuple(scopes or DEFAULT_APP_SCOPES),
            grant_types=("client_credentials",)
            if kind == "backend"
            else ("authorization_code", "refresh_token"),
            launch_types=() if kind == "backend" else tuple(launch_types),
            secret_hash=secret_digest(secret) if secret else None,
            jwks=jwks,
            jwks_uri=jwks_uri,
            can_introspect=can_introspect,
        )
        if self.store.client(client.client_id) is not None:
            raise Conflict(f"client_id {client.client_id!r} is taken")
        self.store.insert_client(client, int(time.time()))
        return client, secret

    def get_client(self, client_id: str) -> Client:
        client = self.store.client(client_id)
        if client is None:
            raise NotFound(f"no client {client_id!r}")
        return client

    def list_clients(self) -> list[Client]:
        return self.store.clients()

    def set_client_disabled(self, client_id: str, disabled: bool) -> None:
        if not self.store.set_client_disabled(client_id, disabled):
            raise NotFound(f"no client {client_id!r}")
        if disabled:
            self.revocations.revoke(self.store.access_of(client_id=client_id))
            self.store.revoke_refresh(client_id=client_id)

    # --- EHR launch ---
    def create_launch(
        self,
        patient: str | None,
        encounter: str | None = None,
        *,
        user_id: str | None = None,
        need_patient_banner: bool = False,
        seconds: int = 600,
    ) -> str:
        """Make an EHR launch context; the EHR passes the returned id to the app as `launch`."""
        launch = LaunchContext(
            secrets.token_urlsafe(16),
            patient,
            encounter,
            user_id,
            need_patient_banner,
            int(time.time()) + seconds,
        )
        self.store.save_launch(launch)
        return launch.id


def _new_user(
    username: str,
    kind: str,
    fhir_user: str | None,
    patient_id: str | None,
    organization: str | None,
    patients: tuple[str, ...],
    display: str,
    user_id: str | None,
) -> User:
    if kind not in USER_KINDS:
        raise BadRequest(f"user kind must be one of {', '.join(USER_KINDS)}")
    if not username.strip():
        raise BadRequest("a username is required")
    if kind == "patient":
        if not patient_id:
            raise BadRequest("a patient user needs the id of their Patient")
        fhir_user = fhir_user or f"Patient/{patient_id}"
    if fhir_user and fhir_user.split("/", 1)[0] not in _FHIR_USER_TYPES[kind]:
        raise BadRequest(f"fhirUser of a {kind} must be a {' or '.join(_FHIR_USER_TYPES[kind])}")
    return User(
        id=user_id or secrets.token_urlsafe(9),
        username=username.strip(),
        kind=kind,
        fhir_user=fhir_user,
        patient_id=patient_id,
        organization=organization,
        patients=tuple(patients),
        display=display,
    )


def _check_client(
    kind: str,
    redirect_uris: tuple[str, ...],
    scopes: tuple[str, ...] | None,
    jwks: dict[str, Any] | None,
    jwks_uri: str | None,
) -> None:
    if kind == "backend":
        if not scopes or not all(s.startswith("system/") and scope_rules.is_known(s) for s in scopes):
            raise BadRequest("a backend client needs its pre-authorised system/ scopes")
    elif not redirect_uris:
        raise BadRequest("an app needs at least one redirect URI")
    if kind in ("asymmetric", "backend") and (jwks is None) == (jwks_uri is None):
        raise BadRequest("an asymmetric client needs its JWKS, by value or by URL (one of the two)")
    unknown = [s for s in scopes or () if not scope_rules.is_known(s)]
    if unknown:
        raise BadRequest(f"unknown scopes: {' '.join(unknown)}")
