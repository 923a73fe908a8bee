"""The OAuth 2 authorization server: authlib's core, wired to this package's store and tokens.

authlib has no Starlette server integration, so `SmartServer` implements the framework hooks
(`create_oauth2_request`, `handle_response`, ...) over `HttpRequest`, a plain value the routes build
after reading the request body (authlib's calls are synchronous; the routes run them in a thread).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Payload,
    OAuth2Request,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, ClientCredentialsGrant, RefreshTokenGrant
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from starlette.responses import Response

from smart_auth import scopes as scope_rules
from smart_auth.assertion import JwksSource, PrivateKeyJwt
from smart_auth.config import AuthConfig
from smart_auth.models import Client, LaunchContext, User
from smart_auth.passwords import secret_digest
from smart_auth.revocations import RevocationList
from smart_auth.store import AuthStore
from smart_auth.tokens import Grant, Issued, TokenIssuer, TokenVerifier

USER_AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "none"]
# authlib logs issued tokens at DEBUG ("Issue token %r to %r"). Tokens must never reach logs, so its
# OAuth 2 loggers stay at INFO or above whatever level the application's root logger is set to.
logging.getLogger("authlib.oauth2").setLevel(logging.INFO)


class HttpPayload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._data: dict[str, str] = {}
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in items:
            self._data.setdefault(name, value)
            self._datalist[name].append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


@dataclass
class Approval:
    """What the user decided on the login, picker and consent pages, carried into the code."""

    user: User
    patient: str | None
    encounter: str | None
    need_patient_banner: bool
    auth_time: int


class HttpRequest(OAuth2Request):  # type: ignore[misc]
    """An HTTP request, already read, in the shape authlib's grants and endpoints expect."""

    def __init__(self, method: str, uri: str, headers: Any, items: list[tuple[str, str]]) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = HttpPayload(items)
        self.approval: Approval | None = None
        self.launch: LaunchContext | None = None
        self.issued: Issued | None = None
        self.grant_id: str | None = None

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data

    @property
    def args(self) -> dict[str, str]:
        return self.payload.data


@dataclass
class StoredCode:
    """An authorization code as saved: authlib reads it through these methods."""

    grant_id: str
    body: dict[str, Any]

    def get_redirect_uri(self) -> str | None:
        redirect_uri: str | None = self.body["redirect_uri"]
        return redirect_uri

    def get_scope(self) -> str:
        return str(self.body["scope"])

    @property
    def code_challenge(self) -> str:
        return str(self.body["code_challenge"])

    @property
    def code_challenge_method(self) -> str:
        return str(self.body["code_challenge_method"])


@dataclass
class StoredRefresh:
    digest: str
    client_id: str
    grant_id: str
    user_id: str
    body: dict[str, Any]

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return " ".join(self.body["scopes"])


class S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE as SMART requires it: S256 for every client; `plain` or a missing challenge is refused."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: Any) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError(
                "PKCE is required: send code_challenge with code_challenge_method=S256."
            )
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'.")
        super().validate_code_verifier(grant, result)


class SmartAuthorizeChecks:
    """SMART rules on the authorization request: the `aud` and the EHR `launch` parameter."""

    def __init__(self, config: AuthConfig, store: AuthStore) -> None:
        self._config = config
        self._store = store

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.check)

    def check(self, grant: Any, _result: Any) -> None:
        request: HttpRequest = grant.request
        data = request.payload.data
        if data.get("aud", "").rstrip("/") != self._config.fhir_base_url:
            raise InvalidRequestError("aud must be this server's FHIR base URL.")
        client: Client = request.client
        launch_id = data.get("launch")
        if launch_id:
            if "ehr" not in client.launch_types:
                raise UnauthorizedClientError("This client is not registered for EHR launch.")
            request.launch = self._store.launch(launch_id, int(time.time()))
            if request.launch is None:
                raise InvalidRequestError("The launch is unknown or has expired.")
        elif "standalone" not in client.launch_types:
            raise UnauthorizedClientError("This client is not registered for standalone launch.")


class SmartCodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = USER_AUTH_METHODS
    server: SmartServer
    request: HttpRequest

    def save_authorization_code(self, code: str, request: HttpRequest) -> None:
        approval = request.approval
        assert approval is not None, "the routes attach the user's approval before issuing a code"
        data = request.payload.data
        body = {
            "user_id": approval.user.id,
            "redirect_uri": data.get("redirect_uri"),  # when sent, the token request must repeat it
            "scope": request.scope,
            "code_challenge": data["code_challenge"],
            "code_challenge_method": data["code_challenge_method"],
            "nonce": data.get("nonce"),
            "patient": approval.patient,
            "encounter": approval.encounter,
            "need_patient_banner": approval.need_patient_banner,
            "auth_time": approval.auth_time,
        }
        expires = int(time.time()) + self.server.config.code_seconds
        self.server.store.save_code(
            secret_digest(code), request.client.client_id, secrets.token_urlsafe(12), body, expires
        )

    def query_authorization_code(self, code: str, client: Client) -> StoredCode | None:
        claimed = self.server.store.claim_code(secret_digest(code), client.client_id)
        if claimed is None:
            return None
        grant_id, body, expires, already_used = claimed
        if already_used:
            # RFC 6749 4.1.2 / OAuth BCP: a replayed code revokes what was issued from it.
            self.server.revoke_grant(grant_id)
            return None
        if expires <= time.time():
            return None
        return StoredCode(grant_id, body)

    def delete_authorization_code(self, authorization_code: StoredCode) -> None:
        pass  # already marked used, atomically, when it was claimed; kept to recognise replays

    def authenticate_user(self, authorization_code: StoredCode) -> User | None:
        return self.server.active_user(authorization_code.body["user_id"])

    def generate_token(
        self,
        user: User | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        code: StoredCode = self.request.authorization_code
        grant = _grant_of(self.request, user, scope, code.grant_id, code.body, nonce=code.body["nonce"])
        return self.server.issue(self.request, grant, include_refresh_token)


class SmartRefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = USER_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotate on every use; the old one is refused afterwards
    server: SmartServer
    request: HttpRequest

    def authenticate_refresh_token(self, refresh_token: str) -> StoredRefresh | None:
        digest = secret_digest(refresh_token)
        found = self.server.store.refresh(digest)
        if found is None:
            return None
        client_id, grant_id, user_id, body, expires, used, revoked = found
        if used and not revoked:
            # A rotated-out refresh token came back: it was stolen, or the client is broken.
            # OAuth BCP 4.14.2: revoke the whole grant.
            self.server.revoke_grant(grant_id)
            return None
        if revoked or expires <= time.time() or self.server.active_user(user_id) is None:
            return None
        return StoredRefresh(digest, client_id, grant_id, user_id, body)

    def authenticate_user(self, refresh_token: StoredRefresh) -> User | None:
        return self.server.active_user(refresh_token.user_id)

    def revoke_old_credential(self, refresh_token: StoredRefresh) -> None:
        if not self.server.store.use_refresh(refresh_token.digest):
            self.server.revoke_grant(refresh_token.grant_id)  # lost a race with a replay of the same token

    def generate_token(
        self,
        user: User | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        stored: StoredRefresh = self.request.refresh_token
        refresh_scopes = tuple(stored.body["scopes"])
        grant = _grant_of(
            self.request, user, scope, stored.grant_id, stored.body, refresh_scopes=refresh_scopes
        )
        return self.server.issue(self.request, grant, include_refresh_token)


def _grant_of(
    request: HttpRequest,
    user: User | None,
    scope: str | None,
    grant_id: str,
    body: dict[str, Any],
    **extra: Any,
) -> Grant:
    """The Grant a code or refresh token carries: its launch context, as stored when it was issued."""
    return Grant(
        client=request.client,
        user=user,
        scopes=tuple(scope_rules.split(scope)),
        grant_id=grant_id,
        patient=body["patient"],
        encounter=body["encounter"],
        need_patient_banner=body["need_patient_banner"],
        auth_time=body["auth_time"],
        **extra,
    )


class BackendServicesGrant(ClientCredentialsGrant):  # type: ignore[misc]
    """SMART Backend Services: client_credentials with a signed assertion, system/ scopes only."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]
    server: SmartServer
    request: HttpRequest

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = scope_rules.split(self.request.payload.scope)
        granted = [
            s for s in scope_rules.within(requested, self.request.client.scopes) if s.startswith("system/")
        ]
        if not granted:
            raise InvalidScopeError("Ask for system/ scopes this client was pre-authorised for.")
        self.request.scope = " ".join(granted)

    def generate_token(
        self,
        user: User | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        grant = Grant(
            client=self.request.client, user=None, scopes=tuple(scope_rules.split(self.request.scope))
        )
        return self.server.issue(self.request, grant, include_refresh=False)


@dataclass
class KnownToken:
    """A token found for introspection or revocation: an access token's claims or a refresh token."""

    client_id: str
    access_claims: dict[str, Any] | None = None
    refresh: StoredRefresh | None = None
    refresh_expires: int = 0

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def is_expired(self) -> bool:
        return self.refresh is not None and self.refresh_expires <= time.time()

    def is_revoked(self) -> bool:
        return False  # revoked and rotated-out tokens are never found


class SmartIntrospection(IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662. Protected by client authentication: a confidential client may introspect its own
    tokens, a client registered with `can_introspect` (a resource server) any token."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]
    server: SmartServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> KnownToken | None:
        return self.server.find_token(token_string, token_type_hint)

    def check_permission(self, token: KnownToken, client: Client, request: Any) -> bool:
        return client.can_introspect or token.check_client(client)

    def introspect_token(self, token: KnownToken) -> dict[str, Any]:
        if token.access_claims is not None:
            claims = token.access_claims
            keep = (
                "scope",
                "client_id",
                "exp",
                "iat",
                "sub",
                "iss",
                "aud",
                "patient",
                "encounter",
                "fhirUser",
                "need_patient_banner",
                "jti",
            )
            payload = {"active": True, "token_type": "Bearer", **{k: claims[k] for k in keep if k in claims}}
            style = self.server.config.smart_style_url
            if style and "need_patient_banner" in claims:  # it was in the token response too
                payload["smart_style_url"] = style
            return payload
        assert token.refresh is not None
        body = token.refresh.body
        return {
            "active": True,
            "token_type": "refresh_token",
            "scope": token.refresh.get_scope(),
            "client_id": token.client_id,
            "exp": token.refresh_expires,
            "sub": token.refresh.user_id,
            "iss": self.server.config.issuer,
            **({"patient": body["patient"]} if body.get("patient") else {}),
        }


class SmartRevocation(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009. Public clients identify themselves with client_id; confidential ones authenticate."""

    CLIENT_AUTH_METHODS = USER_AUTH_METHODS
    server: SmartServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> KnownToken | None:
        return self.server.find_token(token_string, token_type_hint)

    def revoke_token(self, token: KnownToken, request: Any) -> None:
        if token.access_claims is not None:
            self.server.revocations.revoke([(token.access_claims["jti"], int(token.access_claims["exp"]))])
        elif token.refresh is not None:
            # RFC 7009 2.1: revoking a refresh token also ends the access tokens of the same grant.
            self.server.revoke_grant(token.refresh.grant_id)


class SmartServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(
        self,
        config: AuthConfig,
        store: AuthStore,
        issuer: TokenIssuer,
        verifier: TokenVerifier,
        revocations: RevocationList,
        jwks: JwksSource,
    ) -> None:
        super().__init__(scopes_supported=None)
        self.config = config
        self.store = store
        self.issuer = issuer
        self.verifier = verifier
        self.revocations = revocations
        self.register_client_auth_method("private_key_jwt", PrivateKeyJwt(config, store, jwks))
        self.register_grant(SmartCodeGrant, [S256Only(required=True), SmartAuthorizeChecks(config, store)])
        self.register_grant(SmartRefreshGrant)
        self.register_grant(BackendServicesGrant)
        self.register_endpoint(SmartIntrospection)
        self.register_endpoint(SmartRevocation)

    # --- authlib framework hooks ---
    def query_client(self, client_id: str) -> Client | None:
        client = self.store.client(client_id) if isinstance(client_id, str) else None
        return client if client is not None and not client.disabled else None

    def save_token(self, token: dict[str, Any], request: HttpRequest) -> None:
        issued = request.issued
        assert issued is not None, "tokens are only issued through SmartServer.issue"
        client: Client = request.client
        user: User | None = request.user
        sub = user.id if user else client.client_id
        self.store.save_access(issued.jti, request.grant_id, client.client_id, sub, issued.exp)
        if issued.refresh_digest and issued.refresh_body is not None and user and request.grant_id:
            self.store.save_refresh(
                issued.refresh_digest,
                client.client_id,
                request.grant_id,
                user.id,
                issued.refresh_body,
                issued.refresh_expires,
            )

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if not isinstance(request, OAuth2Request):
            raise TypeError("routes pass an HttpRequest")
        return request

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("no JSON endpoints")

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        content = orjson.dumps(body) if isinstance(body, dict) else (body or b"")
        response = Response(content, status_code=status)
        for name, value in headers:
            response.headers[name] = value
        return response

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass  # no signal listeners; audit hooks would go here

    def validate_requested_scope(self, scope: str | None) -> None:
        pass  # unknown or unregistered scopes are dropped per client (get_allowed_scope), not refused

    # --- shared by grants and endpoints ---
    def issue(self, request: HttpRequest, grant: Grant, include_refresh: bool) -> dict[str, Any]:
        request.issued = self.issuer.issue(grant, include_refresh=include_refresh)
        request.grant_id = grant.grant_id
        return request.issued.body

    def active_user(self, user_id: str) -> User | None:
        user = self.store.user(user_id)
        return user if user is not None and not user.disabled else None

    def revoke_grant(self, grant_id: str) -> None:
        self.revocations.revoke(self.store.access_of_grant(grant_id))
        self.store.revoke_refresh(grant_id=grant_id)

    def find_token(self, token: str, hint: str | None) -> KnownToken | None:
        if hint != "refresh_token":
            claims = self.verifier.verify_unexpired_claims(token)
            if claims is not None:
                return KnownToken(str(claims["client_id"]), access_claims=claims)
        found = self.store.refresh(secret_digest(token))
        if found is None:
            return None
        client_id, grant_id, user_id, body, expires, used, revoked = found
        if used or revoked or self.active_user(user_id) is None:
            return None
        return KnownToken(
            client_id,
            refresh=StoredRefresh(secret_digest(token), client_id, grant_id, user_id, body),
            refresh_expires=expires,
        )
