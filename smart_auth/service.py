"""AuthService: the SMART authorization server as one object the FHIR app mounts and asks.

auth = AuthService(AuthConfig(issuer=..., fhir_base_url=..., db_path=...), patients_for_user)
await auth.open()                        # in the app's lifespan
app.include_router(auth.router, prefix="/auth")
access = auth.verify_access_token(bearer)  # per FHIR request; raises InvalidToken -> 401
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter

from smart_auth import discovery
from smart_auth.admin import AuthAdmin
from smart_auth.admin_api import admin_router
from smart_auth.assertion import JwksSource
from smart_auth.config import AuthConfig
from smart_auth.keys import KeyRing
from smart_auth.login import LoginGuard
from smart_auth.models import AccessToken, Client, PatientChoice, User, UserKind
from smart_auth.revocations import RevocationList
from smart_auth.routes import AuthRoutes
from smart_auth.server import SmartServer
from smart_auth.store import AuthStore
from smart_auth.tokens import TokenIssuer, TokenVerifier

PatientsForUser = Callable[[User], Awaitable[list[PatientChoice]]]


async def patients_on_record(user: User) -> list[PatientChoice]:
    """Default picker source: a patient is themself; a carer or clinician the patients on their account."""
    if user.kind == "patient" and user.patient_id:
        return [PatientChoice(user.patient_id, user.display)]
    return [PatientChoice(patient_id) for patient_id in user.patients]


class AuthService:
    def __init__(self, config: AuthConfig, patients_for_user: PatientsForUser | None = None) -> None:
        self.config = config
        self.store = AuthStore(config.db_path)
        self.keys = KeyRing(self.store)
        self.revocations = RevocationList(self.store, config.revocation_sync_seconds)
        self.issuer = TokenIssuer(config, self.keys)
        self.verifier = TokenVerifier(config, self.keys, self.revocations)
        self.server = SmartServer(
            config,
            self.store,
            self.issuer,
            self.verifier,
            self.revocations,
            JwksSource(config.jwks_cache_seconds),
        )
        self.admin = AuthAdmin(self.store, self.revocations, config.password_profile)
        self._routes = AuthRoutes(
            config,
            self.store,
            self.server,
            self.keys,
            LoginGuard(config, self.store),
            patients_for_user or patients_on_record,
        )
        self.router: APIRouter = self._routes.router
        self.router.include_router(admin_router(self.admin, self.verify_access_token), prefix="/admin")

    async def open(self) -> None:
        self.store.open()
        self.keys.load()
        self.revocations.load()
        self.store.purge_expired(int(time.time()))

    async def close(self) -> None:
        self.store.close()

    # --- for the FHIR side ---
    def verify_access_token(self, token: str) -> AccessToken:
        """Check a bearer token (signature, iss, aud, expiry, revocation). Raises InvalidToken."""
        return self.verifier.verify(token)

    def smart_configuration(self) -> dict[str, Any]:
        return discovery.smart_configuration(self.config)

    def oauth_uris_extension(self) -> dict[str, Any]:
        return discovery.oauth_uris_extension(self.config)

    def capability_security(self) -> dict[str, Any]:
        """The whole CapabilityStatement.rest.security element (SMART service + oauth-uris extension)."""
        return discovery.capability_security(self.config)

    def create_launch(
        self,
        patient: str | None,
        encounter: str | None = None,
        *,
        user_id: str | None = None,
        need_patient_banner: bool = False,
    ) -> str:
        """An EHR launch id for `launch=`; bound to `user_id` when given."""
        return self.admin.create_launch(
            patient,
            encounter,
            user_id=user_id,
            need_patient_banner=need_patient_banner,
            seconds=self.config.launch_seconds,
        )

    # --- management (also on the CLI) ---
    async def create_user(self, username: str, password: str, kind: UserKind, **details: Any) -> User:
        return await self.admin.create_user(username, password, kind, **details)

    def create_client(self, name: str, kind: str, **details: Any) -> tuple[Client, str | None]:
        return self.admin.create_client(name, kind, **details)

    def list_users(self) -> list[User]:
        return self.admin.list_users()

    def list_clients(self) -> list[Client]:
        return self.admin.list_clients()

    async def set_user_disabled(self, user_id: str, disabled: bool) -> None:
        await self.admin.set_user_disabled(user_id, disabled)

    def set_client_disabled(self, client_id: str, disabled: bool) -> None:
        self.admin.set_client_disabled(client_id, disabled)

    async def reset_password(self, user_id: str, password: str) -> None:
        await self.admin.reset_password(user_id, password)

    def unlock_user(self, user_id: str) -> None:
        self.admin.unlock_user(user_id)

    def revoke_user_tokens(self, user_id: str) -> None:
        self.admin.revoke_user_tokens(user_id)

    def rotate_signing_key(self) -> str:
        """A new active signing key; tokens signed with older keys verify until those are retired."""
        return self.keys.rotate()

    def retire_signing_key(self, kid: str) -> None:
        """Stop trusting an old key (once its tokens have expired: at most an hour after rotation)."""
        self.keys.retire(kid)
