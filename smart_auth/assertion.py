"""`private_key_jwt` client authentication (RFC 7523 as profiled by SMART Backend Services).

https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html

authlib's JWTBearerClientAssertion decodes with joserfc's default algorithms, which refuse RS384 and
ES384; this subclass passes them explicitly and adds what SMART asks on top: `kid` required, `exp`
at most five minutes ahead, `jti` never seen before, a `jku` header only if it is the registered
JWKS URL. Every failure is 401 `invalid_client` with a fixed description (never joserfc's text,
which may hold characters that OAuth error descriptions must not).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import GuestProtocol, KeyBase, KeySet

from smart_auth.config import AuthConfig
from smart_auth.models import Client
from smart_auth.store import AuthStore

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384")


def _refuse(description: str) -> InvalidClientError:
    return InvalidClientError(description=description, status_code=401)


class JwksSource:
    """Client JWKS registered by value, or fetched from the registered URL and cached for a while."""

    def __init__(self, cache_seconds: int) -> None:
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, KeySet]] = {}
        self._lock = threading.Lock()

    def key_for(self, client: Client, kid: str) -> KeyBase:
        if client.jwks is not None:
            return _key_in(_import(client.jwks), kid)
        if not client.jwks_uri:
            raise _refuse("The client has no registered keys.")
        cached = self._cache.get(client.jwks_uri)
        if cached and time.monotonic() - cached[0] < self._cache_seconds and _has_kid(cached[1], kid):
            return _key_in(cached[1], kid)
        return _key_in(self._fetch(client.jwks_uri), kid)  # unknown kid: the client may have rotated

    def _fetch(self, uri: str) -> KeySet:
        try:
            response = httpx.get(uri, timeout=5, follow_redirects=False)
            response.raise_for_status()
            keys = _import(response.json())
        except (httpx.HTTPError, ValueError):
            raise _refuse("The client's JWKS could not be fetched.") from None
        with self._lock:
            self._cache[uri] = (time.monotonic(), keys)
        return keys


def _import(jwks: dict[str, Any]) -> KeySet:
    try:
        public = [k for k in jwks.get("keys", []) if isinstance(k, dict) and "d" not in k]
        return KeySet.import_key_set({"keys": public})
    except (JoseError, ValueError, TypeError, KeyError):
        raise _refuse("The client's JWKS is not usable.") from None


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def _key_in(keys: KeySet, kid: str) -> KeyBase:
    for key in keys.keys:
        if key.kid == kid:
            return key
    raise _refuse("No registered key has the assertion's kid.")


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, config: AuthConfig, store: AuthStore, jwks: JwksSource) -> None:
        super().__init__(validate_jti=True, leeway=config.clock_leeway_seconds)
        self._config = config
        self._store = store
        self._jwks = jwks

    def __call__(self, query_client: Any, request: Any) -> Client | None:
        try:
            return self._authenticate(query_client, request)
        except InvalidClientError as error:
            error.status_code = 401  # SMART: every assertion failure is 401 invalid_client
            raise

    def _authenticate(self, query_client: Any, request: Any) -> Client | None:
        form = request.form
        assertion = form.get("client_assertion")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
            return None  # not this method: let the next one try
        headers, claims = self.extract_assertion(assertion)
        kid = _check_header(headers)
        client = self._client(query_client, claims)
        jku = headers.get("jku")
        if jku is not None and jku != client.jwks_uri:
            raise _refuse("The jku header is not the client's registered JWKS URL.")
        key = self._jwks.key_for(client, kid)
        request.client = client
        self.process_assertion_claims(assertion, key)
        return self.authenticate_client(client)

    def _client(self, query_client: Any, claims: dict[str, Any]) -> Client:
        client_id = claims.get("sub")
        if not isinstance(client_id, str) or claims.get("iss") != client_id:
            raise _refuse("The assertion's iss and sub must both be the client_id.")
        client = query_client(client_id)
        if not isinstance(client, Client):
            raise _refuse("The client does not exist on this server.")
        return client

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        key: KeyBase = resolve_key

        def pick(_obj: GuestProtocol) -> KeyBase:
            return key

        try:
            token = jwt.decode(assertion, pick, algorithms=list(ALGORITHMS))
        except (JoseError, ValueError):
            raise _refuse("The client assertion's signature is not valid.") from None
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: dict[str, Any]) -> None:
        registry = jwt.JWTClaimsRegistry(
            leeway=self.leeway,
            iss={"essential": True},
            sub={"essential": True},
            aud={"essential": True, "values": self.get_audiences()},
            exp={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError:
            raise _refuse("The client assertion's claims are not valid (aud, exp or jti).") from None
        now = int(time.time())
        if claims["exp"] > now + self._config.assertion_max_seconds + self.leeway:
            raise _refuse("The client assertion's exp is more than five minutes ahead.")
        if not isinstance(claims["jti"], str) or not self.validate_jti(claims, claims["jti"]):
            raise _refuse("The client assertion's jti has been used before.")

    def get_audiences(self) -> list[str]:
        return [self._config.endpoint("token")]

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        return self._store.use_assertion_jti(claims["sub"], jti, int(claims["exp"]), int(time.time()))

    def authenticate_client(self, client: Client) -> Client:
        if client.disabled or not client.check_endpoint_auth_method(self.CLIENT_AUTH_METHOD, "token"):
            raise _refuse("The client cannot authenticate with private_key_jwt.")
        return client


def _check_header(headers: dict[str, Any]) -> str:
    if headers.get("alg") not in ALGORITHMS:
        raise _refuse("The client assertion must be signed with RS384 or ES384.")
    kid = headers.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _refuse("The client assertion must carry a kid.")
    if headers.get("typ", "JWT") != "JWT":
        raise _refuse("The client assertion's typ must be JWT.")
    return kid
