"""The FHIR API with the real authorization server plugged in as `app.state.auth`: a token from the
SMART flow reads the patient's own record, nothing else, and nothing at all once revoked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.rest.writes import plan_put
from fhir_server.settings import Settings
from smart_auth.service import AuthService
from smart_auth.testing import FHIR_BASE, authorize_url, browse, pkce_pair, query_of, running

APP = "http://127.0.0.1:9999/callback"
Both = tuple[AuthService, httpx.AsyncClient, httpx.AsyncClient]


@pytest.fixture
async def both(tmp_path: Path) -> AsyncIterator[Both]:
    async with running(tmp_path / "auth.sqlite3") as (service, auth_client):
        await service.create_user("alice", "alice-password", "patient", patient_id="p1", display="Alice")
        service.create_client("Demo app", "public", redirect_uris=(APP,), client_id="app")
        # Its own data folder: create_app may build an AuthService of its own there; this test
        # swaps in the one the SMART flow runs on, exactly as create_app wires app.state.auth.
        app = create_app(Settings(data_dir=tmp_path / "fhir", auth=True, base_url=FHIR_BASE))
        app.state.auth = service
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url=FHIR_BASE + "/") as fhir,
        ):
            now = datetime.now(UTC)
            ops = [
                plan_put({"resourceType": "Patient", "id": p, "active": True}, p, 0, now)
                for p in ("p1", "p2")
            ]
            await app.state.store.write(ops)
            yield service, auth_client, fhir


async def token_for(auth_client: httpx.AsyncClient, scope: str) -> str:
    verifier, challenge = pkce_pair()
    result = await browse(auth_client, authorize_url("app", APP, scope, challenge), "alice", "alice-password")
    assert result.location, result.last.text
    data = {
        "grant_type": "authorization_code",
        "code": query_of(result.location)["code"],
        "redirect_uri": APP,
        "client_id": "app",
        "code_verifier": verifier,
    }
    response = await auth_client.post("/auth/token", data=data)
    assert response.status_code == 200, response.text
    value: str = response.json()["access_token"]
    return value


async def test_real_token_reads_own_record_only_and_nothing_after_revocation(both: Both) -> None:
    _, auth_client, fhir = both
    token = await token_for(auth_client, "launch/patient openid fhirUser patient/*.rs")
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await fhir.get("Patient/p1", headers=bearer)).status_code == 200
    assert (await fhir.get("Patient/p2", headers=bearer)).status_code == 404
    assert [e["resource"]["id"] for e in (await fhir.get("Patient", headers=bearer)).json()["entry"]] == [
        "p1"
    ]
    assert (await fhir.post("Patient", json={"resourceType": "Patient"}, headers=bearer)).status_code == 403
    revoked = await auth_client.post("/auth/revoke", data={"token": token, "client_id": "app"})
    assert revoked.status_code == 200
    after = await fhir.get("Patient/p1", headers=bearer)
    assert after.status_code == 401 and 'error="invalid_token"' in after.headers["www-authenticate"]


async def test_a_forged_token_is_401(both: Both) -> None:
    _, _, fhir = both
    response = await fhir.get("Patient/p1", headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."})
    assert response.status_code == 401
