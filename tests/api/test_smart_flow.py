"""SMART App Launch through the HTML pages: discovery, standalone and EHR launch, picker, consent,
tokens, refresh, revocation and introspection, and the negative cases each rule implies."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from smart_auth.errors import InvalidToken
from smart_auth.models import User
from smart_auth.service import AuthService
from smart_auth.testing import (
    FHIR_BASE,
    ISSUER,
    authorize_url,
    browse,
    forms_of,
    pkce_pair,
    query_of,
    running,
)

APP = "http://127.0.0.1:9999/callback"
VITALS = (
    "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
)
Auth = tuple[AuthService, httpx.AsyncClient]


@pytest.fixture
async def auth(tmp_path: Path) -> AsyncIterator[Auth]:
    async with running(tmp_path / "auth.sqlite3", lockout_threshold=3) as (service, client):
        await service.create_user(
            "alice", "alice-password", "patient", patient_id="p1", display="Alice Smith"
        )
        await service.create_user(
            "bob", "bob-password", "carer", fhir_user="Person/b1", patients=("p1", "p2")
        )
        await service.create_user(
            "drjones",
            "jones-password",
            "clinician",
            fhir_user="Practitioner/d1",
            organization="o1",
            user_id="dr",
        )
        service.create_client("Demo app", "public", redirect_uris=(APP,), client_id="app")
        service.create_client("Other app", "public", redirect_uris=(APP,), client_id="other")
        yield service, client


async def login_and_token(
    auth: Auth, username: str, password: str, scope: str, **browse_args: Any
) -> tuple[dict[str, Any], httpx.Response]:
    """Run the whole flow for the public client `app`; return the token body and the token response."""
    _, client = auth
    verifier, challenge = pkce_pair()
    result = await browse(
        client, authorize_url("app", APP, scope, challenge), username, password, **browse_args
    )
    assert result.location and result.location.startswith(APP), result.last.text
    code = query_of(result.location)["code"]
    response = await exchange(client, code, verifier)
    assert response.status_code == 200, response.text
    return response.json(), response


async def exchange(
    client: httpx.AsyncClient, code: str, verifier: str | None, client_id: str = "app"
) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": APP, "client_id": client_id}
    if verifier is not None:
        data["code_verifier"] = verifier
    return await client.post("/auth/token", data=data)


async def code_for(auth: Auth, scope: str = "launch/patient patient/*.rs") -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    result = await browse(auth[1], authorize_url("app", APP, scope, challenge), "alice", "alice-password")
    assert result.location
    return query_of(result.location)["code"], verifier


# --- discovery ---


async def test_smart_configuration_lists_absolute_endpoints_and_only_s256(auth: Auth) -> None:
    """Discovery: absolute URLs, S256 only, and the capabilities this server implements."""
    body = (await auth[1].get("/fhir/.well-known/smart-configuration")).json()
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "introspection_endpoint"):
        assert body[name].startswith(ISSUER + "/")
    assert body["issuer"] == ISSUER
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert {"launch-standalone", "launch-ehr", "sso-openid-connect", "permission-v2"} <= set(
        body["capabilities"]
    )
    assert "context-style" not in body["capabilities"]  # no smart_style_url configured
    assert set(body["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}


async def test_openid_configuration_and_jwks_publish_only_public_keys(auth: Auth) -> None:
    """OpenID discovery sits under the issuer; the JWKS holds bare public keys."""
    oidc = (await auth[1].get("/auth/.well-known/openid-configuration")).json()
    assert oidc["issuer"] == ISSUER and oidc["jwks_uri"] == ISSUER + "/jwks"
    keys = (await auth[1].get("/auth/jwks")).json()["keys"]
    assert keys and all("d" not in key and key["kty"] == "RSA" and key["kid"] for key in keys)


async def test_capability_statement_carries_oauth_uris(auth: Auth) -> None:
    """The older oauth-uris extension (what the Python fhirclient reads) has absolute endpoints."""
    security = (await auth[1].get("/fhir/metadata")).json()["rest"][0]["security"]
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris == {name: f"{ISSUER}/{name}" for name in ("authorize", "token", "introspect", "revoke")}


# --- the happy paths ---


async def test_patient_standalone_launch_gets_own_patient_and_tokens(auth: Auth) -> None:
    """A patient signs in; the app gets their Patient as context, an id_token and a refresh token."""
    service, client = auth
    scope = "launch/patient openid fhirUser patient/*.rs offline_access"
    token, response = await login_and_token(auth, "alice", "alice-password", scope)
    assert response.headers["cache-control"] == "no-store" and response.headers["pragma"] == "no-cache"
    assert token["token_type"] == "Bearer" and 0 < token["expires_in"] <= 3600
    assert token["scope"] == scope and token["patient"] == "p1" and token["need_patient_banner"] is True
    assert token["refresh_token"]
    access = service.verify_access_token(token["access_token"])
    assert (access.client_id, access.patient, access.fhir_user, access.user_kind) == (
        "app",
        "p1",
        "Patient/p1",
        "patient",
    )
    assert access.scopes == tuple(scope.split())
    keys = KeySet.import_key_set((await client.get("/auth/jwks")).json())
    id_token = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    assert id_token.claims["fhirUser"] == f"{FHIR_BASE}/Patient/p1"
    assert id_token.claims["aud"] == "app" and id_token.claims["iss"] == ISSUER
    read = await client.get("/fhir/Patient/p1", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert read.status_code == 200


async def test_authorize_accepts_a_form_post(auth: Auth) -> None:
    """`authorize-post`: the same request sent as a form POST starts the same flow."""
    _, challenge = pkce_pair()
    url = authorize_url("app", APP, "launch/patient patient/*.rs", challenge)
    response = await auth[1].post(
        "/auth/authorize",
        content=url.split("?", 1)[1],
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 303 and response.headers["location"].startswith("/auth/login?flow=")


async def test_login_page_is_a_plain_form_with_the_expected_fields(auth: Auth) -> None:
    """username/password fields with autocomplete, a CSRF token, and no script."""
    _, challenge = pkce_pair()
    start = await auth[1].get(authorize_url("app", APP, "launch/patient patient/*.rs", challenge))
    page = await auth[1].get(start.headers["location"])
    assert '<input type="text" id="username" name="username" autocomplete="username"' in page.text
    assert 'name="password" autocomplete="current-password"' in page.text
    assert "<script" not in page.text and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert {name for name, *_ in forms_of(page.text)[0].fields} >= {"flow", "csrf", "username", "password"}


async def test_consent_page_lets_the_user_untick_scopes(auth: Auth) -> None:
    """Unticked scopes are not granted; v1 and granular scopes are echoed exactly as asked."""
    scope = f"launch/patient patient/Patient.read {VITALS} patient/Condition.rs offline_access"
    token, _ = await login_and_token(
        auth, "alice", "alice-password", scope, untick=("patient/Condition.rs", "offline_access")
    )
    assert token["scope"] == f"launch/patient patient/Patient.read {VITALS}"
    assert "refresh_token" not in token
    assert auth[0].verify_access_token(token["access_token"]).scopes == (
        "launch/patient",
        "patient/Patient.read",
        VITALS,
    )


async def test_granular_scope_with_a_chain_is_not_granted(auth: Auth) -> None:
    """A scope whose criteria chain to other resources is dropped from the grant (the token's `scope`
    says so); the plain granular scope beside it is granted as asked."""
    chained = "patient/Observation.rs?focus:Patient.family=Smith"
    reverse = "patient/Observation.rs?focus:Patient._has:DocumentReference:subject:description=Dermatology"
    scope = f"launch/patient {chained} {reverse} {VITALS}"
    token, _ = await login_and_token(auth, "alice", "alice-password", scope)
    assert token["scope"] == f"launch/patient {VITALS}"
    assert auth[0].verify_access_token(token["access_token"]).scopes == ("launch/patient", VITALS)


async def test_carer_with_two_patients_chooses_one_on_the_picker(auth: Auth) -> None:
    """A carer acting for two patients sees the picker; the chosen one is the launch context."""
    _, client = auth
    verifier, challenge = pkce_pair()
    url = authorize_url("app", APP, "launch/patient openid fhirUser patient/*.rs", challenge)
    result = await browse(client, url, "bob", "bob-password", patient="p2")
    assert result.pages == ["/auth/login", "/auth/picker", "/auth/consent"]
    token = (await exchange(client, query_of(result.location or "")["code"], verifier)).json()
    assert token["patient"] == "p2"
    access = auth[0].verify_access_token(token["access_token"])
    assert (access.fhir_user, access.user_kind) == ("Person/b1", "carer")


async def test_picker_refuses_a_patient_that_was_not_offered(auth: Auth) -> None:
    """Posting another patient's id to the picker does not choose them."""
    _, challenge = pkce_pair()
    result = await browse(
        auth[1],
        authorize_url("app", APP, "launch/patient patient/*.rs", challenge),
        "bob",
        "bob-password",
        patient="p3",
    )
    assert result.location is None and result.last.status_code == 400


async def test_ehr_launch_carries_patient_and_encounter(auth: Auth) -> None:
    """EHR launch: the `launch` id made by the EHR gives patient and encounter; no picker."""
    service, client = auth
    launch = service.create_launch("p7", "e7", user_id="dr")
    verifier, challenge = pkce_pair()
    url = authorize_url("app", APP, "launch openid fhirUser patient/*.rs user/*.rs", challenge, launch=launch)
    result = await browse(client, url, "drjones", "jones-password")
    assert result.pages == ["/auth/login", "/auth/consent"]
    token = (await exchange(client, query_of(result.location or "")["code"], verifier)).json()
    assert (token["patient"], token["encounter"], token["need_patient_banner"]) == ("p7", "e7", False)
    access = service.verify_access_token(token["access_token"])
    assert (access.fhir_user, access.organization, access.encounter) == ("Practitioner/d1", "o1", "e7")


async def test_ehr_launch_made_for_another_user_is_denied(auth: Auth) -> None:
    """A launch bound to one clinician cannot be used by someone else who signs in."""
    launch = auth[0].create_launch("p7", None, user_id="dr")
    _, challenge = pkce_pair()
    url = authorize_url("app", APP, "launch patient/*.rs", challenge, launch=launch)
    result = await browse(auth[1], url, "alice", "alice-password")
    assert query_of(result.location or "")["error"] == "access_denied"


async def test_unknown_launch_is_refused(auth: Auth) -> None:
    _, challenge = pkce_pair()
    response = await auth[1].get(authorize_url("app", APP, "launch patient/*.rs", challenge, launch="nope"))
    assert query_of(response.headers["location"])["error"] == "invalid_request"


async def test_user_who_denies_consent_sends_access_denied_with_state(auth: Auth) -> None:
    _, challenge = pkce_pair()
    url = authorize_url("app", APP, "launch/patient patient/*.rs", challenge, state="keep-me")
    result = await browse(auth[1], url, "alice", "alice-password", deny=True)
    redirect = query_of(result.location or "")
    assert (redirect["error"], redirect["state"]) == ("access_denied", "keep-me") and "code" not in redirect


# --- the authorization request refused ---


async def test_state_is_echoed_exactly_so_the_client_can_detect_a_mismatch(auth: Auth) -> None:
    """The server echoes whatever state it got; a client comparing it with its own sees a forgery."""
    _, challenge = pkce_pair()
    odd = "a b&c=d/é"
    result = await browse(
        auth[1], authorize_url("app", APP, "patient/*.rs", challenge, state=odd), "alice", "alice-password"
    )
    assert query_of(result.location or "")["state"] == odd != "state-the-client-sent"


@pytest.mark.parametrize("aud", ["http://127.0.0.1/other-fhir", "", "https://evil.example/fhir"])
async def test_wrong_aud_gets_no_code(auth: Auth, aud: str) -> None:
    _, challenge = pkce_pair()
    response = await auth[1].get(authorize_url("app", APP, "patient/*.rs", challenge, aud=aud))
    redirect = query_of(response.headers["location"])
    assert (
        redirect["error"] == "invalid_request" and "code" not in redirect and redirect["state"] == "state-1"
    )


@pytest.mark.parametrize(
    "pkce",
    [
        {},
        {"code_challenge": "x" * 43, "code_challenge_method": "plain"},
        {"code_challenge": "x" * 43},
        {"code_challenge_method": "S256"},
    ],
)
async def test_plain_or_missing_pkce_is_invalid_request(auth: Auth, pkce: dict[str, str]) -> None:
    response = await auth[1].get(authorize_url("app", APP, "patient/*.rs", None, **pkce))
    assert query_of(response.headers["location"])["error"] == "invalid_request"


async def test_unregistered_redirect_uri_is_never_followed(auth: Auth) -> None:
    """An unknown redirect_uri gets an error page, not a redirect (no open redirector)."""
    _, challenge = pkce_pair()
    response = await auth[1].get(authorize_url("app", "https://evil.example/cb", "patient/*.rs", challenge))
    assert response.status_code == 400 and "location" not in response.headers


async def test_login_post_without_the_flow_cookie_is_refused(auth: Auth) -> None:
    """CSRF: a form posted from elsewhere (no cookie, or a wrong token) does not sign anyone in."""
    _, challenge = pkce_pair()
    start = await auth[1].get(authorize_url("app", APP, "patient/*.rs", challenge))
    form = forms_of((await auth[1].get(start.headers["location"])).text)[0]
    values = form.values(username="alice", password="alice-password")
    forged = [(n, "forged" if n == "csrf" else v) for n, v in values]
    assert (await auth[1].post(form.action, data=dict(forged))).status_code == 400
    auth[1].cookies.clear()
    assert (await auth[1].post(form.action, data=dict(values))).status_code == 400


async def test_failed_logins_lock_the_account(auth: Auth) -> None:
    """After 3 failures (configured) even the right password is refused until an admin unlocks."""
    service, client = auth
    _, challenge = pkce_pair()
    url = authorize_url("app", APP, "launch/patient patient/*.rs", challenge)
    statuses = [(await browse(client, url, "alice", "wrong-password")).last.status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    locked = await browse(client, url, "alice", "alice-password")
    assert locked.last.status_code == 429 and "locked" in locked.last.text and locked.location is None
    user = next(u for u in service.list_users() if u.username == "alice")
    service.unlock_user(user.id)
    assert (await browse(client, url, "alice", "alice-password")).location


# --- the token endpoint refused ---


async def test_bad_code_is_invalid_grant(auth: Auth) -> None:
    verifier, _ = pkce_pair()
    response = await exchange(auth[1], "not-a-code", verifier)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


async def test_replayed_code_is_refused_and_revokes_what_it_issued(auth: Auth) -> None:
    service, client = auth
    code, verifier = await code_for(auth, "launch/patient patient/*.rs offline_access")
    first = (await exchange(client, code, verifier)).json()
    replay = await exchange(client, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    with pytest.raises(InvalidToken):
        service.verify_access_token(first["access_token"])
    refreshed = await client.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "client_id": "app", "refresh_token": first["refresh_token"]},
    )
    assert refreshed.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("verifier", ["wrong" * 10, "", None])
async def test_wrong_or_missing_verifier_is_400(auth: Auth, verifier: str | None) -> None:
    code, _ = await code_for(auth)
    response = await exchange(auth[1], code, verifier)
    assert response.status_code == 400 and response.json()["error"] in ("invalid_grant", "invalid_request")


async def test_code_of_one_client_cannot_be_used_by_another(auth: Auth) -> None:
    code, verifier = await code_for(auth)
    response = await exchange(auth[1], code, verifier, client_id="other")
    assert response.json()["error"] == "invalid_grant"


async def test_unknown_grant_type_is_unsupported(auth: Auth) -> None:
    response = await auth[1].post("/auth/token", data={"grant_type": "password", "client_id": "app"})
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


async def test_confidential_symmetric_client_authenticates_with_http_basic(auth: Auth) -> None:
    service, client = auth
    confidential, secret = service.create_client("Clinic", "symmetric", redirect_uris=(APP,))
    assert secret is not None
    verifier, challenge = pkce_pair()
    url = authorize_url(confidential.client_id, APP, "launch/patient patient/*.rs", challenge)
    code = query_of((await browse(client, url, "alice", "alice-password")).location or "")["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": APP, "code_verifier": verifier}
    wrong = await client.post("/auth/token", data=data, auth=(confidential.client_id, "not-the-secret"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    right = await client.post("/auth/token", data=data, auth=(confidential.client_id, secret))
    assert right.status_code == 200 and right.json()["patient"] == "p1"


# --- refresh, revocation, introspection ---


async def refresh(
    client: httpx.AsyncClient, token: str, client_id: str = "app", **extra: str
) -> httpx.Response:
    return await client.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id, **extra},
    )


async def test_refresh_token_rotates_and_the_old_one_is_refused(auth: Auth) -> None:
    """Each refresh returns a new refresh token; presenting an old one ends the whole grant."""
    service, client = auth
    token, _ = await login_and_token(
        auth, "alice", "alice-password", "launch/patient patient/*.rs offline_access"
    )
    second = (await refresh(client, token["refresh_token"])).json()
    assert second["refresh_token"] != token["refresh_token"] and second["patient"] == "p1"
    assert second["expires_in"] <= 3600
    replay = await refresh(client, token["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert (await refresh(client, second["refresh_token"])).json()["error"] == "invalid_grant"
    with pytest.raises(InvalidToken):
        service.verify_access_token(second["access_token"])


async def test_refresh_may_narrow_scope_but_not_widen_it(auth: Auth) -> None:
    _, client = auth
    token, _ = await login_and_token(
        auth,
        "alice",
        "alice-password",
        "launch/patient patient/Patient.rs patient/Observation.rs online_access",
    )
    wider = await refresh(client, token["refresh_token"], scope="patient/*.cruds")
    assert wider.json()["error"] == "invalid_scope"
    narrower = (await refresh(client, token["refresh_token"], scope="patient/Patient.rs")).json()
    assert narrower["scope"] == "patient/Patient.rs"
    # RFC 6749 section 6: the rotated refresh token keeps the whole original scope
    again = (await refresh(client, narrower["refresh_token"])).json()
    assert again["scope"] == "launch/patient patient/Patient.rs patient/Observation.rs online_access"


async def test_refresh_token_is_bound_to_its_client(auth: Auth) -> None:
    token, _ = await login_and_token(
        auth, "alice", "alice-password", "launch/patient patient/*.rs offline_access"
    )
    assert (await refresh(auth[1], token["refresh_token"], client_id="other")).json()[
        "error"
    ] == "invalid_grant"


async def test_revoked_access_token_no_longer_verifies(auth: Auth) -> None:
    service, client = auth
    token, _ = await login_and_token(auth, "alice", "alice-password", "launch/patient patient/*.rs")
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert (await client.get("/fhir/Patient/p1", headers=bearer)).status_code == 200
    revoked = await client.post("/auth/revoke", data={"token": token["access_token"], "client_id": "app"})
    assert revoked.status_code == 200
    assert (await client.get("/fhir/Patient/p1", headers=bearer)).status_code == 401
    with pytest.raises(InvalidToken):
        service.verify_access_token(token["access_token"])


async def test_revoked_refresh_token_is_refused_and_ends_its_access_tokens(auth: Auth) -> None:
    service, client = auth
    token, _ = await login_and_token(
        auth, "alice", "alice-password", "launch/patient patient/*.rs offline_access"
    )
    await client.post(
        "/auth/revoke",
        data={"token": token["refresh_token"], "token_type_hint": "refresh_token", "client_id": "app"},
    )
    assert (await refresh(client, token["refresh_token"])).json()["error"] == "invalid_grant"
    with pytest.raises(InvalidToken):
        service.verify_access_token(token["access_token"])


async def test_introspection_needs_client_authentication_and_reports_context(auth: Auth) -> None:
    """RFC 7662: a resource server (registered with can_introspect) sees the token's context;
    anonymous callers get 401; revoked or unknown tokens are inactive."""
    service, client = auth
    resource_server, secret = service.create_client(
        "FHIR API", "symmetric", redirect_uris=(APP,), can_introspect=True
    )
    basic = (resource_server.client_id, secret or "")
    token, _ = await login_and_token(
        auth, "alice", "alice-password", "launch/patient fhirUser openid patient/*.rs"
    )
    anonymous = await client.post("/auth/introspect", data={"token": token["access_token"]})
    assert anonymous.status_code == 401
    info = (await client.post("/auth/introspect", data={"token": token["access_token"]}, auth=basic)).json()
    assert info["active"] is True and info["patient"] == "p1" and info["client_id"] == "app"
    assert info["scope"] == token["scope"] and info["need_patient_banner"] is True
    assert info["fhirUser"] == f"{FHIR_BASE}/Patient/p1" and info["iss"] == ISSUER and info["exp"] > 0
    assert (await client.post("/auth/introspect", data={"token": "nonsense"}, auth=basic)).json() == {
        "active": False
    }
    await client.post("/auth/revoke", data={"token": token["access_token"], "client_id": "app"})
    after = await client.post("/auth/introspect", data={"token": token["access_token"]}, auth=basic)
    assert after.json() == {"active": False}


async def test_disabling_a_user_revokes_their_tokens(auth: Auth) -> None:
    service, _ = auth
    token, _ = await login_and_token(
        auth, "alice", "alice-password", "launch/patient patient/*.rs offline_access"
    )
    alice: User = next(u for u in service.list_users() if u.username == "alice")
    await service.set_user_disabled(alice.id, True)
    with pytest.raises(InvalidToken):
        service.verify_access_token(token["access_token"])
    assert (await refresh(auth[1], token["refresh_token"])).json()["error"] == "invalid_grant"


async def test_redirect_uri_must_be_repeated_exactly_when_it_was_sent(auth: Auth) -> None:
    """RFC 6749 4.1.3: the token request repeats the authorization request's redirect_uri."""
    code, verifier = await code_for(auth)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": "app",
        "code_verifier": verifier,
        "redirect_uri": APP + "/other",
    }
    response = await auth[1].post("/auth/token", data=data)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


async def test_redirect_uri_may_be_left_out_when_the_client_has_only_one(auth: Auth) -> None:
    verifier, challenge = pkce_pair()
    url = authorize_url("app", APP, "launch/patient patient/*.rs", challenge).replace(
        "&redirect_uri=http%3A%2F%2F127.0.0.1%3A9999%2Fcallback", ""
    )
    result = await browse(auth[1], url, "alice", "alice-password")
    assert result.location and result.location.startswith(APP + "?code=")
    data = {
        "grant_type": "authorization_code",
        "code": query_of(result.location)["code"],
        "client_id": "app",
        "code_verifier": verifier,
    }
    assert (await auth[1].post("/auth/token", data=data)).status_code == 200


async def test_expired_code_is_invalid_grant(tmp_path: Path) -> None:
    """Codes are short-lived (60 s by default); here they expire at once."""
    async with running(tmp_path / "auth.sqlite3", code_seconds=0) as (service, client):
        await service.create_user("alice", "alice-password", "patient", patient_id="p1")
        service.create_client("Demo app", "public", redirect_uris=(APP,), client_id="app")
        code, verifier = await code_for((service, client))
        response = await exchange(client, code, verifier)
        assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


async def test_many_failures_from_one_address_are_slowed_down(tmp_path: Path) -> None:
    """Spraying passwords over many usernames from one address is refused before any account locks."""
    async with running(tmp_path / "auth.sqlite3", login_failures_per_ip=2) as (service, client):
        await service.create_user("alice", "alice-password", "patient", patient_id="p1")
        service.create_client("Demo app", "public", redirect_uris=(APP,), client_id="app")
        _, challenge = pkce_pair()
        url = authorize_url("app", APP, "patient/*.rs", challenge)
        for name in ("nobody", "somebody"):
            assert (await browse(client, url, name, "guess-guess")).last.status_code == 401
        blocked = await browse(client, url, "alice", "alice-password")
        assert blocked.last.status_code == 429 and "retry-after" in blocked.last.headers


async def test_id_token_carries_the_nonce_and_profile_name(auth: Auth) -> None:
    _, client = auth
    verifier, challenge = pkce_pair()
    url = authorize_url("app", APP, "openid fhirUser profile launch/patient", challenge, nonce="n-0S6")
    result = await browse(client, url, "alice", "alice-password")
    token = (await exchange(client, query_of(result.location or "")["code"], verifier)).json()
    keys = KeySet.import_key_set((await client.get("/auth/jwks")).json())
    claims = jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims
    assert (claims["nonce"], claims["name"], claims["sub"]) == (
        "n-0S6",
        "Alice Smith",
        auth[0].verify_access_token(token["access_token"]).sub,
    )


async def test_expired_access_token_reads_nothing(auth: Auth, monkeypatch: pytest.MonkeyPatch) -> None:
    """An hour later the token is refused by the resource server and reported inactive."""
    service, client = auth
    token, _ = await login_and_token(auth, "alice", "alice-password", "launch/patient patient/*.rs")
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert (await client.get("/fhir/Patient/p1", headers=bearer)).status_code == 200
    an_hour_later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: an_hour_later)
    assert (await client.get("/fhir/Patient/p1", headers=bearer)).status_code == 401
    with pytest.raises(InvalidToken):
        service.verify_access_token(token["access_token"])
