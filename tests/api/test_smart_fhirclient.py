"""An independent client: the Python `fhirclient` 4.4.0 library completes a standalone launch against
a real uvicorn server on 127.0.0.1 (discovery via /metadata oauth-uris, PKCE S256, picker, consent)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fhirclient import client as fhirclient

from smart_auth.config import AuthConfig
from smart_auth.service import AuthService
from smart_auth.testing import browse, build_app

REDIRECT = "http://127.0.0.1:9999/fhirclient-callback"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[AuthService, str]]:
    """The auth server in a real uvicorn on a free port; yields the service and the origin URL."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    config = AuthConfig(
        issuer=f"{origin}/auth",
        fhir_base_url=f"{origin}/fhir",
        db_path=tmp_path / "auth.sqlite3",
        password_profile="CHEAPEST",
    )
    service = AuthService(config)
    server = uvicorn.Server(
        uvicorn.Config(build_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield service, origin
    finally:
        server.should_exit = True
        thread.join(10)


async def test_python_fhirclient_completes_a_standalone_launch(live: tuple[AuthService, str]) -> None:
    service, origin = live
    await service.create_user(
        "bob", "bob-password", "carer", fhir_user="RelatedPerson/r1", patients=("p1", "p2")
    )
    service.create_client("fhirclient app", "public", client_id="py-app", redirect_uris=(REDIRECT,))
    smart = fhirclient.FHIRClient(
        settings={"app_id": "py-app", "api_base": f"{origin}/fhir", "redirect_uri": REDIRECT}
    )
    authorize_url = smart.authorize_url  # reads /metadata, finds the oauth-uris, adds PKCE S256 and state
    assert (
        authorize_url.startswith(f"{origin}/auth/authorize?")
        and "code_challenge_method=S256" in authorize_url
    )

    async with httpx.AsyncClient(base_url=origin) as browser:
        result = await browse(browser, authorize_url, "bob", "bob-password", patient="p2")
    assert result.pages == ["/auth/login", "/auth/picker", "/auth/consent"]
    assert result.location and result.location.startswith(REDIRECT)

    smart.handle_callback(result.location)  # checks state, exchanges the code with the verifier
    assert smart.ready and smart.patient_id == "p2"
    access = service.verify_access_token(smart.server.auth.access_token)
    assert (access.client_id, access.patient, access.fhir_user) == ("py-app", "p2", "RelatedPerson/r1")
    assert smart.patient is not None and smart.patient.id == "p2"  # a FHIR read with the bearer token
