"""HTTP endpoints of the authorization server (FastAPI), mounted by the app at the issuer's path.

The authorization code flow across pages:
  /authorize (GET or form POST) -> validate with authlib -> a server-side flow + a per-flow cookie
  /login -> /picker (when the user may act for several patients) -> /consent -> redirect with code.
Every form carries the flow id and a CSRF token that must match both the flow and the flow's
HttpOnly cookie, so a page on another site can neither post our forms nor reuse a leaked flow URL.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749 import OAuth2Error
from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from smart_auth import pages
from smart_auth import scopes as scope_rules
from smart_auth.config import AuthConfig
from smart_auth.discovery import openid_configuration
from smart_auth.keys import KeyRing
from smart_auth.login import LoginGuard
from smart_auth.models import Client, PatientChoice, User
from smart_auth.server import Approval, HttpRequest, SmartServer
from smart_auth.store import AuthStore

PatientsForUser = Callable[[User], Awaitable[list[PatientChoice]]]
_EXPIRED = "This sign-in page has expired or was not opened from this site."
_PURGE_SECONDS = 600  # how often expired codes, flows, jtis and token records are swept away


@dataclass
class Flow:
    """One authorization request in progress, kept in the auth DB between pages."""

    id: str
    csrf: str
    client_id: str
    params: list[tuple[str, str]]
    user_id: str | None = None
    auth_time: int | None = None
    patient: str | None = None
    patient_display: str | None = None
    encounter: str | None = None
    need_patient_banner: bool = True
    launch_user_id: str | None = None
    step: str = "login"

    @property
    def requested(self) -> list[str]:
        return scope_rules.split(dict(self.params).get("scope"))

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "params": [list(p) for p in self.params]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Flow:
        return cls(**{**data, "params": [tuple(p) for p in data["params"]]})


class AuthRoutes:
    def __init__(
        self,
        config: AuthConfig,
        store: AuthStore,
        server: SmartServer,
        keys: KeyRing,
        guard: LoginGuard,
        patients_for_user: PatientsForUser,
    ) -> None:
        self.config = config
        self.store = store
        self.server = server
        self.keys = keys
        self.guard = guard
        self.patients_for_user = patients_for_user
        self.path = urlsplit(config.issuer).path.rstrip("/")
        self.secure_cookies = config.issuer.startswith("https://")
        self._next_purge = 0.0
        self.router = self._router()

    def _router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/authorize", self.authorize, methods=["GET", "POST"], include_in_schema=False)
        router.add_api_route("/login", self.login_form, methods=["GET"], include_in_schema=False)
        router.add_api_route("/login", self.login, methods=["POST"], include_in_schema=False)
        router.add_api_route("/picker", self.picker_form, methods=["GET"], include_in_schema=False)
        router.add_api_route("/picker", self.pick, methods=["POST"], include_in_schema=False)
        router.add_api_route("/consent", self.consent_form, methods=["GET"], include_in_schema=False)
        router.add_api_route("/consent", self.consent, methods=["POST"], include_in_schema=False)
        router.add_api_route("/token", self.token, methods=["POST"], include_in_schema=False)
        router.add_api_route("/introspect", self.introspect, methods=["POST"], include_in_schema=False)
        router.add_api_route("/revoke", self.revoke, methods=["POST"], include_in_schema=False)
        router.add_api_route("/jwks", self.jwks, methods=["GET"], include_in_schema=False)
        router.add_api_route(
            "/.well-known/openid-configuration", self.openid, methods=["GET"], include_in_schema=False
        )
        return router

    # --- the authorization request ---
    async def authorize(self, request: Request) -> Response:
        if request.method == "POST":
            items = _items(await request.form())
        else:
            items = list(request.query_params.multi_items())
        oauth = self._oauth_request(items)
        try:
            grant = self.server.get_consent_grant(oauth)
        except OAuth2Error as error:
            return self._authorize_error(oauth, error)
        flow = Flow(secrets.token_hex(16), secrets.token_urlsafe(24), grant.client.client_id, items)
        if oauth.launch is not None:  # EHR launch: the context comes with the launch id
            flow.patient, flow.encounter = oauth.launch.patient, oauth.launch.encounter
            flow.need_patient_banner = oauth.launch.need_patient_banner
            flow.launch_user_id = oauth.launch.user_id
        self._save(flow)
        return self._goto("login", flow)

    def _oauth_request(self, items: list[tuple[str, str]]) -> HttpRequest:
        return HttpRequest("GET", self.config.endpoint("authorize"), {}, items)

    def _authorize_error(self, oauth: HttpRequest, error: OAuth2Error) -> Response:
        if error.redirect_uri:  # the client and redirect_uri are known good: tell the app
            response: Response = self.server.handle_error_response(oauth, error)
            return response
        # Never redirect to an unverified URI (open redirector); tell the user instead.
        return _html(pages.error_page("This app cannot sign you in", error.description or error.error), 400)

    # --- login ---
    async def login_form(self, request: Request) -> Response:
        flow = self._flow(request.query_params.get("flow"), step="login")
        if flow is None:
            return _html(pages.error_page("Sign-in expired", _EXPIRED), 400)
        return self._login_page(flow)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        flow = self._posted_flow(request, form, step="login")
        if flow is None:
            return _html(pages.error_page("Sign-in expired", _EXPIRED), 400)
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        address = request.client.host if request.client else "unknown"
        result = await self.guard.attempt(username, password, address)
        if result.user is None:
            headers = {"Retry-After": str(result.retry_after)} if result.retry_after else {}
            return self._login_page(flow, result.error, username, result.status, headers)
        flow.user_id, flow.auth_time = result.user.id, int(time.time())
        flow.csrf = secrets.token_urlsafe(24)  # a new token once signed in
        return await self._after_login(flow, result.user)

    def _login_page(
        self,
        flow: Flow,
        error: str | None = None,
        username: str = "",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = pages.login_page(
            self._url("login"), flow.id, flow.csrf, self._client_name(flow), error, username
        )
        return _html(body, status, headers)

    async def _after_login(self, flow: Flow, user: User) -> Response:
        """Establish the patient context, then go to the picker or to consent."""
        if flow.launch_user_id and flow.launch_user_id != user.id:
            return self._deny(flow)  # an EHR launch made for another user
        if flow.patient is None and scope_rules.wants_patient_context(flow.requested):
            if user.kind == "patient":
                flow.patient = user.patient_id
            else:
                choices = await self.patients_for_user(user)
                if len(choices) > 1:
                    flow.step = "picker"
                    self._save(flow)
                    return self._goto("picker", flow)
                if choices:
                    flow.patient, flow.patient_display = choices[0].id, choices[0].display
            if flow.patient is None:
                return self._deny(flow)  # nobody whose record this user may open
        flow.step = "consent"
        self._save(flow)
        return self._goto("consent", flow)

    # --- patient picker ---
    async def picker_form(self, request: Request) -> Response:
        flow = self._flow(request.query_params.get("flow"), step="picker")
        user = self._flow_user(flow)
        if flow is None or user is None:
            return _html(pages.error_page("Sign-in expired", _EXPIRED), 400)
        choices = await self.patients_for_user(user)
        return _html(pages.picker_page(self._url("picker"), flow.id, flow.csrf, choices))

    async def pick(self, request: Request) -> Response:
        form = await request.form()
        flow = self._posted_flow(request, form, step="picker")
        user = self._flow_user(flow)
        if flow is None or user is None:
            return _html(pages.error_page("Sign-in expired", _EXPIRED), 400)
        choices = await self.patients_for_user(user)
        chosen = next((c for c in choices if c.id == form.get("patient")), None)
        if chosen is None:
            page = pages.picker_page(
                self._url("picker"), flow.id, flow.csrf, choices, "Choose one of the people listed."
            )
            return _html(page, 400)
        flow.patient, flow.patient_display, flow.step = chosen.id, chosen.display, "consent"
        self._save(flow)
        return self._goto("consent", flow)

    # --- consent ---
    async def consent_form(self, request: Request) -> Response:
        flow = self._flow(request.query_params.get("flow"), step="consent")
        user = self._flow_user(flow)
        if flow is None or user is None:
            return _html(pages.error_page("Sign-in expired", _EXPIRED), 400)
        page = pages.consent_page(
            self._url("consent"),
            flow.id,
            flow.csrf,
            self._client_name(flow),
            self._grantable(flow, user),
            flow.patient_display or flow.patient,
        )
        return _html(page)

    async def consent(self, request: Request) -> Response:
        form = await request.form()
        flow = self._posted_flow(request, form, step="consent")
        user = self._flow_user(flow)
        if flow is None or user is None:
            return _html(pages.error_page("Sign-in expired", _EXPIRED), 400)
        ticked = set(form.getlist("scope"))
        granted = [s for s in self._grantable(flow, user) if s in ticked]
        if form.get("decision") != "allow" or not granted:
            return self._deny(flow)
        return self._issue_code(flow, user, granted)

    def _grantable(self, flow: Flow, user: User) -> list[str]:
        """The requested scopes this client may be given to this user (what the consent page offers)."""
        client = self.store.client(flow.client_id)
        allowed = client.get_allowed_scope(" ".join(flow.requested)) if client else None
        return [
            s
            for s in scope_rules.split(allowed)
            if not s.startswith("system/") and (s != scope_rules.ADMIN_SCOPE or user.kind == "admin")
        ]

    def _issue_code(self, flow: Flow, user: User, granted: list[str]) -> Response:
        items = [(k, v) for k, v in flow.params if k != "scope"] + [("scope", " ".join(granted))]
        oauth = self._oauth_request(items)
        try:
            grant = self.server.get_consent_grant(oauth)  # validated again: the client may be gone
        except OAuth2Error as error:
            return self._authorize_error(oauth, error)
        keeps_patient = any(s in ("launch", "launch/patient") or s.startswith("patient/") for s in granted)
        keeps_encounter = any(s in ("launch", "launch/encounter") for s in granted)
        oauth.approval = Approval(
            user,
            flow.patient if keeps_patient else None,
            flow.encounter if keeps_encounter else None,
            flow.need_patient_banner,
            flow.auth_time or int(time.time()),
        )
        response: Response = self.server.create_authorization_response(oauth, grant_user=user, grant=grant)
        return self._finish(flow, response)

    def _deny(self, flow: Flow) -> Response:
        oauth = self._oauth_request(flow.params)
        try:
            grant = self.server.get_consent_grant(oauth)
        except OAuth2Error as error:
            return self._authorize_error(oauth, error)
        return self._finish(
            flow, self.server.create_authorization_response(oauth, grant_user=None, grant=grant)
        )

    def _finish(self, flow: Flow, response: Response) -> Response:
        self.store.delete_flow(flow.id)
        response.delete_cookie(self._cookie(flow), path=self.path or "/")
        return response

    # --- token, introspection, revocation, keys ---
    async def token(self, request: Request) -> Response:
        oauth = HttpRequest(
            "POST", self.config.endpoint("token"), request.headers, _items(await request.form())
        )
        response: Response = await asyncio.to_thread(self._token_response, oauth)
        return response

    def _token_response(self, oauth: HttpRequest) -> Response:
        if time.monotonic() >= self._next_purge:  # piggy-backs on traffic: no background task to manage
            self._next_purge = time.monotonic() + _PURGE_SECONDS
            self.store.purge_expired(int(time.time()))
        response: Response = self.server.create_token_response(oauth)
        return response

    async def introspect(self, request: Request) -> Response:
        return await self._endpoint("introspection", "introspect", request)

    async def revoke(self, request: Request) -> Response:
        return await self._endpoint("revocation", "revoke", request)

    async def _endpoint(self, name: str, path: str, request: Request) -> Response:
        oauth = HttpRequest("POST", self.config.endpoint(path), request.headers, _items(await request.form()))
        response: Response = await asyncio.to_thread(self.server.create_endpoint_response, name, oauth)
        return response

    async def jwks(self) -> Response:
        return JSONResponse(self.keys.jwks(), headers={"Cache-Control": "public, max-age=300"})

    async def openid(self) -> Response:
        return JSONResponse(openid_configuration(self.config))

    # --- helpers ---
    def _url(self, name: str, flow: Flow | None = None) -> str:
        query = f"?{urlencode({'flow': flow.id})}" if flow else ""
        return f"{self.path}/{name}{query}"

    def _goto(self, name: str, flow: Flow) -> Response:
        """Redirect to the flow's next page. The flow's CSRF token also travels in an HttpOnly cookie,
        which binds the flow to this browser."""
        response = RedirectResponse(self._url(name, flow), status_code=303, headers=pages.PAGE_HEADERS)
        response.set_cookie(
            self._cookie(flow),
            flow.csrf,
            max_age=self.config.flow_seconds,
            path=self.path or "/",
            httponly=True,
            samesite="lax",
            secure=self.secure_cookies,
        )
        return response

    def _cookie(self, flow: Flow) -> str:
        return f"smart_flow_{flow.id}"

    def _save(self, flow: Flow) -> None:
        self.store.save_flow(flow.id, flow.to_json(), int(time.time()) + self.config.flow_seconds)

    def _flow(self, flow_id: str | None, step: str | None = None) -> Flow | None:
        data = self.store.flow(flow_id, int(time.time())) if flow_id else None
        flow = Flow.from_json(data) if data else None
        return flow if flow is not None and (step is None or flow.step == step) else None

    def _posted_flow(self, request: Request, form: FormData, step: str | None = None) -> Flow | None:
        """The flow a form was posted for, if its CSRF token matches the flow and the flow's cookie."""
        flow = self._flow(str(form.get("flow", "")), step)
        if flow is None:
            return None
        posted, cookie = str(form.get("csrf", "")), request.cookies.get(self._cookie(flow), "")
        if not (hmac.compare_digest(posted, flow.csrf) and hmac.compare_digest(cookie, flow.csrf)):
            return None
        return flow

    def _flow_user(self, flow: Flow | None) -> User | None:
        return self.server.active_user(flow.user_id) if flow is not None and flow.user_id else None

    def _client_name(self, flow: Flow) -> str:
        client: Client | None = self.store.client(flow.client_id)
        return client.name if client else "An app"


def _items(form: FormData) -> list[tuple[str, str]]:
    return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]


def _html(body: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**pages.PAGE_HEADERS, **(headers or {})})
