"""Helpers for tests that drive the authorization server like a browser and an app would.

Kept in the package (not under tests/) so the FHIR side's tests can get real tokens the same way.
No pytest dependency.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse

from smart_auth.errors import InvalidToken

if TYPE_CHECKING:
    from smart_auth.service import AuthService


def pkce_pair() -> tuple[str, str]:
    """A PKCE code_verifier and its S256 code_challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Form:
    action: str
    method: str
    fields: list[tuple[str, str, str, bool]] = field(default_factory=list)  # name, value, type, checked

    def values(self, **overrides: str) -> list[tuple[str, str]]:
        """What a browser would submit: hidden/text fields, checked boxes; `overrides` replace by name."""
        data = [
            (name, value)
            for name, value, kind, checked in self.fields
            if kind not in ("checkbox", "radio", "submit") or checked
        ]
        data = [(n, v) for n, v in data if n not in overrides]
        return data + list(overrides.items())


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag in ("input", "button") and self.forms and "name" in a:
            kind = a.get("type", "text" if tag == "input" else "submit")
            self.forms[-1].fields.append((a["name"], a.get("value", ""), kind, "checked" in a))


def forms_of(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@dataclass
class BrowserResult:
    """Where the browser ended: the redirect to the app (`location`), or a page it stopped on."""

    location: str | None
    last: httpx.Response
    pages: list[str] = field(default_factory=list)  # paths of the pages shown, e.g. ["/auth/login", ...]


async def browse(
    client: httpx.AsyncClient,
    authorize_url: str,
    username: str,
    password: str,
    *,
    patient: str | None = None,
    untick: tuple[str, ...] = (),
    deny: bool = False,
) -> BrowserResult:
    """Follow /authorize -> login -> (picker) -> consent like a user; stop at the redirect to the app."""
    response = await client.get(authorize_url)
    pages: list[str] = []
    while response.status_code in (302, 303) and _is_ours(response, client):
        response = await client.get(response.headers["location"])
        pages.append(urlsplit(str(response.url)).path)
        if response.status_code != 200:
            break
        form = forms_of(response.text)[0]
        data = _answer(pages[-1], form, username, password, patient, untick, deny)
        response = await client.post(form.action, content=urlencode(data), headers=_FORM)
    location = response.headers.get("location") if response.status_code in (302, 303) else None
    return BrowserResult(location, response, pages)


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _is_ours(response: httpx.Response, client: httpx.AsyncClient) -> bool:
    """A redirect to one of the server's own pages (relative), not to the app's redirect_uri."""
    location: str = response.headers.get("location", "")
    return location.startswith("/")


def _answer(
    path: str,
    form: Form,
    username: str,
    password: str,
    patient: str | None,
    untick: tuple[str, ...],
    deny: bool,
) -> list[tuple[str, str]]:
    if path.endswith("/login"):
        return form.values(username=username, password=password)
    if path.endswith("/picker"):
        values = [(n, v) for n, v in form.values() if n != "patient"]
        return [*values, ("patient", patient or "")]
    values = [(n, v) for n, v in form.values() if not (n == "scope" and v in untick)]
    return [*values, ("decision", "deny" if deny else "allow")]


def build_app(service: AuthService, fhir_prefix: str = "/fhir", auth_prefix: str = "/auth") -> FastAPI:
    """A minimal FHIR-ish app around the auth server, wired the way the real app should be.

    Serves the router, SMART discovery, a CapabilityStatement with the oauth-uris extension, and a
    `GET {fhir}/Patient/{id}` that needs a bearer token (so clients can prove their token works).
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.open()
        try:
            yield
        finally:
            await service.close()

    app = FastAPI(lifespan=lifespan)
    app.include_router(service.router, prefix=auth_prefix)

    @app.get(fhir_prefix + "/.well-known/smart-configuration")
    async def smart_configuration() -> JSONResponse:
        return JSONResponse(service.smart_configuration())

    @app.get(fhir_prefix + "/metadata")
    async def metadata() -> JSONResponse:
        body = {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-01-01",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{"mode": "server", "security": service.capability_security()}],
        }
        return JSONResponse(body, media_type="application/fhir+json")

    @app.get(fhir_prefix + "/Patient/{patient_id}")
    async def read_patient(patient_id: str, request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            access = service.verify_access_token(token) if scheme.lower() == "bearer" else None
        except InvalidToken:
            access = None
        if access is None:
            return JSONResponse({"resourceType": "OperationOutcome"}, 401, {"WWW-Authenticate": "Bearer"})
        if access.patient not in (None, patient_id):
            return JSONResponse({"resourceType": "OperationOutcome"}, 403)
        return JSONResponse({"resourceType": "Patient", "id": patient_id}, media_type="application/fhir+json")

    return app


ISSUER = "http://127.0.0.1/auth"
FHIR_BASE = "http://127.0.0.1/fhir"


@asynccontextmanager
async def running(
    db_path: Path, *, issuer: str = ISSUER, fhir_base_url: str = FHIR_BASE, **config: Any
) -> AsyncIterator[tuple[AuthService, httpx.AsyncClient]]:
    """An AuthService in `build_app`, started, with an HTTP client on it (ASGI, no sockets)."""
    from smart_auth.config import AuthConfig
    from smart_auth.service import AuthService

    config.setdefault("password_profile", "CHEAPEST")  # hashing cost is not what tests are about
    service = AuthService(AuthConfig(issuer=issuer, fhir_base_url=fhir_base_url, db_path=db_path, **config))
    app = build_app(service)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        base = issuer.rsplit("/", 1)[0]
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            yield service, client


def authorize_url(
    client_id: str,
    redirect_uri: str,
    scope: str,
    challenge: str | None,
    *,
    state: str = "state-1",
    aud: str = FHIR_BASE,
    path: str = "/auth/authorize",
    **extra: str,
) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "aud": aud,
        **extra,
    }
    if challenge is not None:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return f"{path}?{urlencode(params)}"
