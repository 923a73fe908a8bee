"""The admin HTTP API: only an admin user's token with the auth-admin scope may manage users and apps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from smart_auth.errors import InvalidToken
from smart_auth.service import AuthService
from smart_auth.testing import authorize_url, browse, pkce_pair, query_of, running

APP = "http://127.0.0.1:9999/admin-console"
Auth = tuple[AuthService, httpx.AsyncClient]


@pytest.fixture
async def auth(tmp_path: Path) -> AsyncIterator[Auth]:
    async with running(tmp_path / "auth.sqlite3") as (service, client):
        await service.create_user("root", "root-password", "admin", fhir_user="Person/admin1")
        await service.create_user("alice", "alice-password", "patient", patient_id="p1")
        service.create_client(
            "Admin console",
            "public",
            client_id="console",
            redirect_uris=(APP,),
            scopes=("openid", "fhirUser", "auth-admin"),
        )
        yield service, client


async def admin_token(auth: Auth, username: str, password: str) -> dict[str, str]:
    verifier, challenge = pkce_pair()
    url = authorize_url("console", APP, "openid auth-admin", challenge)
    code = query_of((await browse(auth[1], url, username, password)).location or "")["code"]
    response = await auth[1].post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": APP,
            "client_id": "console",
            "code_verifier": verifier,
        },
    )
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_admin_registers_an_app_and_a_user(auth: Auth) -> None:
    service, client = auth
    bearer = await admin_token(auth, "root", "root-password")
    made = await client.post(
        "/auth/admin/clients",
        headers=bearer,
        json={"name": "Letters", "kind": "symmetric", "redirect_uris": ["https://letters.example/cb"]},
    )
    assert made.status_code == 201 and made.json()["client_secret"] and "secret_hash" not in made.json()
    assert made.headers["cache-control"] == "no-store"
    person = await client.post(
        "/auth/admin/users",
        headers=bearer,
        json={
            "username": "carol",
            "password": "carol-password",
            "kind": "carer",
            "fhir_user": "RelatedPerson/r9",
            "patients": ["p1"],
        },
    )
    assert person.status_code == 201 and person.json()["patients"] == ["p1"] and "password" not in person.text
    usernames = [u["username"] for u in (await client.get("/auth/admin/users", headers=bearer)).json()]
    assert sorted(usernames) == ["alice", "carol", "root"]
    assert made.json()["client_id"] in [c.client_id for c in service.list_clients()]


async def test_admin_disabling_a_user_ends_their_tokens(auth: Auth) -> None:
    service, client = auth
    alice_bearer = await admin_token(auth, "alice", "alice-password")  # a token of alice's, any scope
    bearer = await admin_token(auth, "root", "root-password")
    alice = next(u for u in service.list_users() if u.username == "alice")
    assert (await client.post(f"/auth/admin/users/{alice.id}/disable", headers=bearer)).status_code == 204
    with pytest.raises(InvalidToken):
        service.verify_access_token(alice_bearer["Authorization"].removeprefix("Bearer "))
    assert (await client.post("/auth/admin/users/nobody/disable", headers=bearer)).status_code == 404


async def test_non_admin_never_gets_the_admin_scope(auth: Auth) -> None:
    """A patient asking for auth-admin is not offered it; their token is refused by the admin API."""
    bearer = await admin_token(auth, "alice", "alice-password")
    assert auth[0].verify_access_token(bearer["Authorization"][7:]).scopes == ("openid",)
    response = await auth[1].get("/auth/admin/users", headers=bearer)
    assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"


async def test_admin_api_needs_a_valid_bearer_token(auth: Auth) -> None:
    anonymous = await auth[1].get("/auth/admin/clients")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
    forged = await auth[1].get("/auth/admin/clients", headers={"Authorization": "Bearer abc.def.ghi"})
    assert forged.status_code == 401


async def test_admin_api_reports_bad_requests(auth: Auth) -> None:
    bearer = await admin_token(auth, "root", "root-password")
    response = await auth[1].post(
        "/auth/admin/clients",
        headers=bearer,
        json={"name": "X", "kind": "backend", "scopes": ["patient/*.rs"]},
    )
    assert response.status_code == 400 and "system/" in response.json()["error"]
