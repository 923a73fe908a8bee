"""Access tokens, id_tokens and refresh tokens: issuing them, and verifying access tokens fast.

Access tokens are JWTs (RFC 9068 shape, `typ: at+jwt`) signed with the server's RS256 key, so the
FHIR side verifies them without a DB round trip. A verified token is cached by its exact string:
the signature and claims are checked once, expiry and revocation on every call.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import GuestProtocol, KeyBase

from smart_auth.config import AuthConfig
from smart_auth.errors import InvalidToken
from smart_auth.keys import SIGNING_ALG, KeyRing
from smart_auth.models import AccessToken, Client, TokenSubjectKind, User
from smart_auth.passwords import new_secret, secret_digest
from smart_auth.revocations import RevocationList
from smart_auth.scopes import needs_refresh_token

ACCESS_TOKEN_TYPE = "at+jwt"
_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Grant:
    """Everything a token is issued for: who, to which app, which scopes and which launch context."""

    client: Client
    user: User | None  # None for Backend Services
    scopes: tuple[str, ...]
    grant_id: str | None = None  # shared by the code's tokens and every refresh that follows
    patient: str | None = None
    encounter: str | None = None
    need_patient_banner: bool | None = None
    nonce: str | None = None
    auth_time: int | None = None
    # The refresh token's scope when it differs from the access token's: RFC 6749 section 6 keeps a
    # rotated refresh token's scope identical even when the client asks for a narrower access token.
    refresh_scopes: tuple[str, ...] | None = None


@dataclass
class Issued:
    """A token response body and what must be persisted for it."""

    body: dict[str, Any]
    jti: str
    exp: int
    refresh_digest: str | None = None
    refresh_body: dict[str, Any] | None = None
    refresh_expires: int = 0


class TokenIssuer:
    def __init__(self, config: AuthConfig, keys: KeyRing) -> None:
        self._config = config
        self._keys = keys

    def issue(self, grant: Grant, *, include_refresh: bool) -> Issued:
        now = int(time.time())
        lifetime = self._config.user_token_seconds if grant.user else self._config.backend_token_seconds
        jti, exp = secrets.token_urlsafe(16), now + lifetime
        body: dict[str, Any] = {
            "access_token": self._access_jwt(grant, jti, now, exp),
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": " ".join(grant.scopes),
        }
        body.update(_launch_context(grant, self._config.smart_style_url))
        if grant.user and "openid" in grant.scopes:
            body["id_token"] = self._id_token(grant, grant.user, now, exp)
        issued = Issued(body, jti, exp)
        if include_refresh and grant.user and needs_refresh_token(grant.refresh_scopes or grant.scopes):
            self._add_refresh_token(issued, grant, now)
        return issued

    def _access_jwt(self, grant: Grant, jti: str, now: int, exp: int) -> str:
        claims: dict[str, Any] = {
            "iss": self._config.issuer,
            "aud": self._config.fhir_base_url,
            "sub": grant.user.id if grant.user else grant.client.client_id,
            "client_id": grant.client.client_id,
            "scope": " ".join(grant.scopes),
            "jti": jti,
            "iat": now,
            "exp": exp,
            "kind": grant.user.kind if grant.user else "system",
        }
        optional: dict[str, Any] = {"patient": grant.patient, "encounter": grant.encounter}
        if grant.user and grant.patient:  # a launch context parameter: introspection repeats it
            optional["need_patient_banner"] = grant.need_patient_banner is not False
        if grant.user:
            optional["fhirUser"] = self.absolute(grant.user.fhir_user)
            optional["org"] = grant.user.organization
        claims.update({k: v for k, v in optional.items() if v is not None})
        return self._sign(claims, ACCESS_TOKEN_TYPE)

    def _id_token(self, grant: Grant, user: User, now: int, exp: int) -> str:
        claims: dict[str, Any] = {
            "iss": self._config.issuer,
            "sub": user.id,
            "aud": grant.client.client_id,
            "iat": now,
            "exp": exp,
            "auth_time": grant.auth_time or now,
        }
        if grant.nonce:
            claims["nonce"] = grant.nonce
        if "fhirUser" in grant.scopes and user.fhir_user:
            claims["fhirUser"] = self.absolute(user.fhir_user)
        if "profile" in grant.scopes and user.display:
            claims["name"] = user.display
        return self._sign(claims, "JWT")

    def _add_refresh_token(self, issued: Issued, grant: Grant, now: int) -> None:
        assert grant.user is not None
        token = new_secret()
        issued.body["refresh_token"] = token
        issued.refresh_digest = secret_digest(token)
        scopes = grant.refresh_scopes or grant.scopes
        offline = "offline_access" in scopes
        lifetime = self._config.refresh_token_days * 86400 if offline else self._config.online_refresh_seconds
        issued.refresh_expires = now + lifetime
        issued.refresh_body = {
            "scopes": list(scopes),
            "patient": grant.patient,
            "encounter": grant.encounter,
            "need_patient_banner": grant.need_patient_banner,
            "auth_time": grant.auth_time,
        }

    def _sign(self, claims: dict[str, Any], typ: str) -> str:
        key = self._keys.signing_key
        header = {"alg": SIGNING_ALG, "kid": key.kid, "typ": typ}
        return jwt.encode(header, claims, key, algorithms=[SIGNING_ALG])

    def absolute(self, reference: str | None) -> str | None:
        """fhirUser as a resource URL on this FHIR server (what SMART puts in id_tokens)."""
        if not reference or "://" in reference:
            return reference
        return f"{self._config.fhir_base_url}/{reference}"


def _launch_context(grant: Grant, style_url: str | None) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if grant.patient:
        context["patient"] = grant.patient
    if grant.encounter:
        context["encounter"] = grant.encounter
    if grant.user and (grant.patient or grant.encounter):
        context["need_patient_banner"] = grant.need_patient_banner is not False
        if style_url:
            context["smart_style_url"] = style_url
    return context


class TokenVerifier:
    """Verifies access tokens for the FHIR side: once per request, in tens of microseconds."""

    def __init__(self, config: AuthConfig, keys: KeyRing, revocations: RevocationList) -> None:
        self._config = config
        self._keys = keys
        self._revocations = revocations
        self._cache: OrderedDict[str, tuple[AccessToken, str]] = OrderedDict()  # token -> (claims, kid)
        self._registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": config.issuer},
            aud={"essential": True, "value": config.fhir_base_url},
            exp={"essential": True},
            jti={"essential": True},
            sub={"essential": True},
            client_id={"essential": True},
            leeway=0,
        )
        self._base_prefix = config.fhir_base_url + "/"

    def verify(self, token: str) -> AccessToken:
        cached = self._cache.get(token)
        if cached is None:
            cached = self._verify_signature_and_claims(token)
            self._remember(token, cached)
        access, kid = cached
        if not self._keys.knows(kid):
            raise InvalidToken("the access token was signed by a retired key")
        if access.exp <= time.time():
            raise InvalidToken("the access token has expired")
        if self._revocations.is_revoked(access.jti):
            raise InvalidToken("the access token has been revoked")
        return access

    def verify_unexpired_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a genuine, unexpired, unrevoked access token (for introspection), else None."""
        try:
            self.verify(token)
            return jwt.decode(token, self._key_for, algorithms=[SIGNING_ALG]).claims
        except (InvalidToken, JoseError, ValueError):
            return None

    def _remember(self, token: str, verified: tuple[AccessToken, str]) -> None:
        self._cache[token] = verified
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    def _verify_signature_and_claims(self, token: str) -> tuple[AccessToken, str]:
        try:
            decoded = jwt.decode(token, self._key_for, algorithms=[SIGNING_ALG])
            self._registry.validate(decoded.claims)
        except (JoseError, ValueError) as error:
            raise InvalidToken(f"the access token is not valid: {type(error).__name__}") from None
        if decoded.header.get("typ") != ACCESS_TOKEN_TYPE:
            raise InvalidToken("not an access token")
        return self._access_token(decoded.claims), str(decoded.header["kid"])

    def _key_for(self, obj: GuestProtocol) -> KeyBase:
        kid = obj.headers().get("kid")
        key = self._keys.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("the access token was not signed by a key of this server")
        return key

    def _access_token(self, claims: dict[str, Any]) -> AccessToken:
        fhir_user = claims.get("fhirUser")
        if isinstance(fhir_user, str) and fhir_user.startswith(self._base_prefix):
            fhir_user = fhir_user[len(self._base_prefix) :]
        kind: TokenSubjectKind = claims.get("kind", "system")
        return AccessToken(
            client_id=claims["client_id"],
            sub=claims["sub"],
            scopes=tuple(str(claims.get("scope", "")).split()),
            patient=claims.get("patient"),
            encounter=claims.get("encounter"),
            fhir_user=fhir_user,
            user_kind=kind,
            organization=claims.get("org"),
            jti=claims["jti"],
            exp=int(claims["exp"]),
            iat=int(claims.get("iat", 0)),
        )
