"""End to end, as a real app would meet the real server: `fhir-server serve --demo` in its own process,
the independent Python `fhirclient` 4.4.0 library doing the SMART standalone launch (discovery from
/metadata, PKCE S256, login, patient picker, consent, code exchange), then FHIR reads and searches
with its token, narrowed to the picked patient by the access rules."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fhirclient import client as fhirclient
from fhirclient.models.observation import Observation

from smart_auth.testing import browse
from tests.live_server import live_server

pytestmark = pytest.mark.slow
REDIRECT = "http://127.0.0.1:9000/callback"  # registered for the demo app by --demo


def demo_password(data_dir: Path, username: str) -> str:
    for line in (data_dir / "demo-credentials.txt").read_text().splitlines():
        if line.startswith(username + " "):
            return line.split()[1]
    raise AssertionError(f"no demo password for {username}")


async def test_fhirclient_launch_as_carer_reads_only_the_picked_patient(tmp_path: Path) -> None:
    with live_server(tmp_path, "--demo") as (base, _):
        smart = fhirclient.FHIRClient(
            settings={
                "app_id": "demo-app",
                "api_base": base,
                "redirect_uri": REDIRECT,
                "scope": "launch/patient patient/*.rs openid fhirUser",
            }
        )
        authorize_url = smart.authorize_url
        assert "code_challenge_method=S256" in authorize_url
        origin = base.rsplit("/fhir", 1)[0]
        async with httpx.AsyncClient(base_url=origin) as browser:
            result = await browse(
                browser, authorize_url, "carer1", demo_password(tmp_path, "carer1"), patient="pat-000003"
            )
        assert result.pages == ["/auth/login", "/auth/picker", "/auth/consent"]
        assert result.location is not None
        smart.handle_callback(result.location)
        assert smart.ready and smart.patient_id == "pat-000003"

        assert smart.patient is not None and smart.patient.id == "pat-000003"
        observations = Observation.where(struct={"_count": "50"}).perform_resources(smart.server)
        assert observations, "the carer sees the general-health observations shared with them"
        assert {o.subject.reference for o in observations} == {"Patient/pat-000003"}
        labels = {coding.code for o in observations for coding in o.meta.security}
        assert labels == {"GENERAL_HEALTH"}  # the Consent grants that label only

        token = smart.server.auth.access_token
        async with httpx.AsyncClient(
            base_url=base + "/", headers={"Authorization": f"Bearer {token}"}
        ) as api:
            assert (await api.get("Patient/pat-000002")).status_code == 404  # not shared with this carer
            other = await api.get("Observation", params={"subject": "Patient/pat-000002"})
            assert other.status_code == 200 and other.json().get("total", 0) == 0
            assert (await api.get("Patient/pat-000003")).status_code == 200


async def test_request_without_token_is_401_with_challenge(tmp_path: Path) -> None:
    with live_server(tmp_path, "--demo") as (base, _):
        response = httpx.get(f"{base}/Patient/pat-000001")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["resourceType"] == "OperationOutcome"
        assert httpx.get(f"{base}/metadata").status_code == 200
        smart_config = httpx.get(f"{base}/.well-known/smart-configuration", headers={"Accept": "text/html"})
        assert smart_config.status_code == 200
        assert smart_config.json()["code_challenge_methods_supported"] == ["S256"]


async def test_discovery_is_open_to_any_origin(tmp_path: Path) -> None:
    """SMART: /metadata and smart-configuration may be fetched by a browser app from any origin."""
    with live_server(tmp_path) as (base, _):
        origin = {"Origin": "https://some-app.example"}
        assert httpx.get(f"{base}/metadata", headers=origin).headers["access-control-allow-origin"] == "*"
        config = httpx.get(f"{base}/.well-known/smart-configuration", headers=origin)
        assert config.headers["access-control-allow-origin"] == "*"
        assert config.headers["content-type"].startswith("application/json")
