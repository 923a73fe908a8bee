"""Confidential asymmetric clients and SMART Backend Services: `private_key_jwt` assertions
(RS384/ES384, JWKS by value or by URL) and client_credentials with pre-authorised system/ scopes."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from smart_auth.assertion import ASSERTION_TYPE
from smart_auth.service import AuthService
from smart_auth.testing import ISSUER, authorize_url, browse, pkce_pair, query_of, running

TOKEN_URL = ISSUER + "/token"
APP = "http://127.0.0.1:9999/callback"
Auth = tuple[AuthService, httpx.AsyncClient]

RS_KEY = RSAKey.generate_key(2048, parameters={"kid": "rs-1"}, private=True)
EC_KEY = ECKey.generate_key("P-384", parameters={"kid": "ec-1"}, private=True)


def public_jwks(*keys: RSAKey | ECKey) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in keys]}


class JwksServer:
    """A client's JWKS endpoint on 127.0.0.1 (a real socket: the auth server fetches it with httpx)."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = public_jwks(EC_KEY)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)


@pytest.fixture(scope="module")
def jwks_endpoint() -> Iterator[JwksServer]:
    server = JwksServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def jwks_server(jwks_endpoint: JwksServer) -> JwksServer:
    jwks_endpoint.jwks = public_jwks(EC_KEY)
    return jwks_endpoint


@pytest.fixture
async def auth(tmp_path: Path, jwks_server: JwksServer) -> AsyncIterator[Auth]:
    async with running(tmp_path / "auth.sqlite3") as (service, client):
        service.create_client(
            "Letters",
            "backend",
            client_id="letters",
            jwks=public_jwks(RS_KEY),
            scopes=("system/Patient.rs", "system/DocumentReference.cruds"),
        )
        service.create_client(
            "EHR feed",
            "backend",
            client_id="ehr",
            jwks_uri=jwks_server.url,
            scopes=("system/*.rs",),
            can_introspect=True,
        )
        await service.create_user("alice", "alice-password", "patient", patient_id="p1")
        yield service, client


def assertion(
    key: RSAKey | ECKey,
    alg: str,
    client_id: str,
    *,
    exp_in: int = 240,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": now + exp_in,
        "jti": secrets.token_hex(8),
        **claims,
    }
    return jwt.encode(
        {"alg": alg, "kid": key.kid, "typ": "JWT", **(header or {})}, body, key, algorithms=[alg]
    )


async def backend_token(client: httpx.AsyncClient, signed: str, scope: str) -> httpx.Response:
    return await client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed,
        },
    )


async def test_backend_service_gets_a_short_system_token_with_rs384(auth: Auth) -> None:
    """RS384 assertion, JWKS registered by value: a <= 5 minute token, no refresh token."""
    service, client = auth
    response = await backend_token(client, assertion(RS_KEY, "RS384", "letters"), "system/Patient.rs")
    assert response.status_code == 200, response.text
    token = response.json()
    assert 0 < token["expires_in"] <= 300 and "refresh_token" not in token and "patient" not in token
    assert response.headers["cache-control"] == "no-store"
    access = service.verify_access_token(token["access_token"])
    assert (access.sub, access.client_id, access.user_kind, access.scopes) == (
        "letters",
        "letters",
        "system",
        ("system/Patient.rs",),
    )
    assert access.exp - time.time() <= 300


async def test_es384_assertion_with_keys_fetched_from_the_registered_url(auth: Auth) -> None:
    response = await backend_token(auth[1], assertion(EC_KEY, "ES384", "ehr"), "system/Observation.rs")
    assert response.status_code == 200, response.text


async def test_rotated_client_key_is_found_by_refetching_the_jwks(
    auth: Auth, jwks_server: JwksServer
) -> None:
    """A kid the cached JWKS does not have makes the server fetch the client's JWKS again."""
    assert (
        await backend_token(auth[1], assertion(EC_KEY, "ES384", "ehr"), "system/Patient.rs")
    ).status_code == 200
    new_key = ECKey.generate_key("P-384", parameters={"kid": "ec-2"}, private=True)
    jwks_server.jwks = public_jwks(EC_KEY, new_key)
    response = await backend_token(auth[1], assertion(new_key, "ES384", "ehr"), "system/Patient.rs")
    assert response.status_code == 200, response.text


async def test_only_pre_authorised_system_scopes_are_granted(auth: Auth) -> None:
    """Asking for more than was pre-authorised grants the pre-authorised part only."""
    asked = "system/Patient.rs system/Observation.rs patient/*.rs system/DocumentReference.c"
    token = (await backend_token(auth[1], assertion(RS_KEY, "RS384", "letters"), asked)).json()
    assert token["scope"] == "system/Patient.rs system/DocumentReference.c"
    v1 = (await backend_token(auth[1], assertion(EC_KEY, "ES384", "ehr"), "system/Observation.read")).json()
    assert v1["scope"] == "system/Observation.read"  # v1 scope echoed as asked, within system/*.rs


@pytest.mark.parametrize("scope", ["system/Observation.rs", "patient/*.rs", "", "system/Patient.cruds"])
async def test_nothing_pre_authorised_is_invalid_scope(auth: Auth, scope: str) -> None:
    response = await backend_token(auth[1], assertion(RS_KEY, "RS384", "letters"), scope)
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


OTHER_RS_KEY = RSAKey.generate_key(2048, parameters={"kid": "rs-1"}, private=True)
BAD_ASSERTIONS: dict[str, Any] = {
    "exp more than 5 minutes ahead": lambda: assertion(RS_KEY, "RS384", "letters", exp_in=600),
    "expired": lambda: assertion(RS_KEY, "RS384", "letters", exp_in=-120),
    "RS256 instead of RS384": lambda: assertion(RS_KEY, "RS256", "letters"),
    "wrong audience": lambda: assertion(RS_KEY, "RS384", "letters", aud=ISSUER + "/authorize"),
    "iss is not sub": lambda: assertion(RS_KEY, "RS384", "letters", iss="ehr"),
    "no jti": lambda: assertion(RS_KEY, "RS384", "letters", jti=None),
    "unknown kid": lambda: assertion(RS_KEY, "RS384", "letters", header={"kid": "who"}),
    "unregistered key, same kid": lambda: assertion(OTHER_RS_KEY, "RS384", "letters"),
    "jku not the registered URL": lambda: assertion(
        RS_KEY, "RS384", "letters", header={"jku": "http://127.0.0.1:1/evil.json"}
    ),
    "unknown client": lambda: assertion(RS_KEY, "RS384", "nobody"),
}


@pytest.mark.parametrize("case", list(BAD_ASSERTIONS))
async def test_bad_client_assertion_is_401_invalid_client(auth: Auth, case: str) -> None:
    response = await backend_token(auth[1], BAD_ASSERTIONS[case](), "system/Patient.rs")
    assert response.status_code == 401 and response.json()["error"] == "invalid_client", case


async def test_replayed_jti_is_refused(auth: Auth) -> None:
    signed = assertion(RS_KEY, "RS384", "letters")
    assert (await backend_token(auth[1], signed, "system/Patient.rs")).status_code == 200
    replay = await backend_token(auth[1], signed, "system/Patient.rs")
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"


async def test_jku_equal_to_the_registered_url_is_accepted(auth: Auth, jwks_server: JwksServer) -> None:
    signed = assertion(EC_KEY, "ES384", "ehr", header={"jku": jwks_server.url})
    assert (await backend_token(auth[1], signed, "system/Patient.rs")).status_code == 200


async def test_disabled_client_cannot_get_tokens(auth: Auth) -> None:
    auth[0].set_client_disabled("letters", True)
    response = await backend_token(auth[1], assertion(RS_KEY, "RS384", "letters"), "system/Patient.rs")
    assert response.status_code == 401


async def test_public_client_cannot_use_client_credentials(auth: Auth) -> None:
    auth[0].create_client("Public", "public", redirect_uris=(APP,), client_id="app")
    response = await auth[1].post(
        "/auth/token",
        data={"grant_type": "client_credentials", "client_id": "app", "scope": "system/Patient.rs"},
    )
    assert response.json()["error"] in ("invalid_client", "unauthorized_client")


async def test_asymmetric_app_exchanges_its_code_with_private_key_jwt(auth: Auth) -> None:
    """A confidential asymmetric user-facing app authenticates at the token endpoint by assertion."""
    service, client = auth
    app, _ = service.create_client("Clinic app", "asymmetric", redirect_uris=(APP,), jwks=public_jwks(RS_KEY))
    verifier, challenge = pkce_pair()
    url = authorize_url(app.client_id, APP, "launch/patient patient/*.rs", challenge)
    code = query_of((await browse(client, url, "alice", "alice-password")).location or "")["code"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": APP,
        "code_verifier": verifier,
        "client_assertion_type": ASSERTION_TYPE,
    }
    unsigned = await client.post("/auth/token", data={**data, "client_id": app.client_id})
    assert unsigned.json()["error"] == "invalid_client"  # a confidential client must authenticate
    signed = await client.post(
        "/auth/token", data={**data, "client_assertion": assertion(RS_KEY, "RS384", app.client_id)}
    )
    assert signed.status_code == 200 and signed.json()["patient"] == "p1"


async def test_resource_server_introspects_with_private_key_jwt(auth: Auth) -> None:
    token = (await backend_token(auth[1], assertion(RS_KEY, "RS384", "letters"), "system/Patient.rs")).json()
    response = await auth[1].post(
        "/auth/introspect",
        data={
            "token": token["access_token"],
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(EC_KEY, "ES384", "ehr"),
        },
    )
    body = response.json()
    assert body["active"] is True and body["client_id"] == "letters" and body["scope"] == "system/Patient.rs"


async def test_jwks_of_the_server_verifies_its_access_tokens(auth: Auth) -> None:
    """Access tokens are RS256 JWTs a third party can check against the published JWKS."""
    token = (await backend_token(auth[1], assertion(RS_KEY, "RS384", "letters"), "system/Patient.rs")).json()
    keys = KeySet.import_key_set((await auth[1].get("/auth/jwks")).json())
    claims = jwt.decode(token["access_token"], keys, algorithms=["RS256"]).claims
    assert claims["aud"] == "http://127.0.0.1/fhir" and claims["client_id"] == "letters"
