"""The admin HTTP API: manage users and apps over HTTP, for a trust administrator's bearer token.

Mounted under the auth router at /admin. A caller needs an access token of a user of kind `admin`
that was granted the `auth-admin` scope (only admin users can be granted it; the app must be
registered with it). Everything here is also available as AuthService methods and on the CLI.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from smart_auth.admin import AuthAdmin
from smart_auth.errors import AuthError, BadRequest, Conflict, InvalidToken, NotFound
from smart_auth.models import AccessToken, Client, User, UserKind
from smart_auth.scopes import ADMIN_SCOPE

_STATUS = {NotFound: 404, Conflict: 409, BadRequest: 400}


class NewUser(BaseModel):
    username: str
    password: str = Field(min_length=8)
    kind: UserKind
    fhir_user: str | None = None
    patient_id: str | None = None
    organization: str | None = None
    patients: list[str] = []
    display: str = ""
    id: str | None = None


class NewClient(BaseModel):
    name: str
    kind: str
    client_id: str | None = None
    redirect_uris: list[str] = []
    scopes: list[str] | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    launch_types: list[str] = ["standalone", "ehr"]
    can_introspect: bool = False


class NewPassword(BaseModel):
    password: str = Field(min_length=8)


def user_json(user: User) -> dict[str, Any]:
    return {**asdict(user), "patients": list(user.patients)}


def client_json(client: Client) -> dict[str, Any]:
    body = {k: v for k, v in asdict(client).items() if k != "secret_hash"}
    return {**body, **{k: list(v) for k, v in body.items() if isinstance(v, tuple)}}


Handler = Callable[..., Awaitable[Response]]


def admin_router(admin: AuthAdmin, verify: Callable[[str], AccessToken]) -> APIRouter:
    """The /admin routes. Self-contained: refusals and errors become JSON responses here, so the host
    app needs no exception handlers for them."""

    def guarded(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(request: Request, *args: Any, **kwargs: Any) -> Response:
            refusal = _refusal(request, verify)
            if refusal is not None:
                return refusal
            try:
                return await handler(request, *args, **kwargs)
            except AuthError as error:
                status = next((code for kind, code in _STATUS.items() if isinstance(error, kind)), 400)
                return JSONResponse({"error": str(error)}, status)

        return run

    router = APIRouter()
    _user_routes(router, admin, guarded)
    _client_routes(router, admin, guarded)
    return router


def _refusal(request: Request, verify: Callable[[str], AccessToken]) -> Response | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _refuse(401, "invalid_request")
    try:
        access = verify(token)
    except InvalidToken:
        return _refuse(401, "invalid_token")
    if access.user_kind != "admin" or ADMIN_SCOPE not in access.scopes:
        return _refuse(403, "insufficient_scope")
    return None


def _refuse(status: int, error: str) -> Response:
    headers = {"WWW-Authenticate": f'Bearer error="{error}"'} if status == 401 else {}
    return JSONResponse({"error": error}, status, headers)


def _user_routes(router: APIRouter, admin: AuthAdmin, guarded: Callable[[Handler], Handler]) -> None:
    @router.get("/users")
    @guarded
    async def list_users(request: Request) -> Response:
        return JSONResponse([user_json(u) for u in admin.list_users()])

    @router.post("/users")
    @guarded
    async def create_user(request: Request, body: NewUser) -> Response:
        details = body.model_dump(exclude={"username", "password", "kind", "id", "patients"})
        user = await admin.create_user(
            body.username, body.password, body.kind, patients=tuple(body.patients), user_id=body.id, **details
        )
        return JSONResponse(user_json(user), 201)

    @router.post("/users/{user_id}/{action}")
    @guarded
    async def user_action(request: Request, user_id: str, action: str) -> Response:
        admin.get_user(user_id)
        if action in ("disable", "enable"):
            await admin.set_user_disabled(user_id, action == "disable")
        elif action == "unlock":
            admin.unlock_user(user_id)
        elif action == "revoke-tokens":
            admin.revoke_user_tokens(user_id)
        else:
            raise NotFound(f"no action {action!r}")
        return Response(status_code=204)

    @router.put("/users/{user_id}/password")
    @guarded
    async def reset_password(request: Request, user_id: str, body: NewPassword) -> Response:
        await admin.reset_password(user_id, body.password)
        return Response(status_code=204)


def _client_routes(router: APIRouter, admin: AuthAdmin, guarded: Callable[[Handler], Handler]) -> None:
    @router.get("/clients")
    @guarded
    async def list_clients(request: Request) -> Response:
        return JSONResponse([client_json(c) for c in admin.list_clients()])

    @router.post("/clients")
    @guarded
    async def create_client(request: Request, body: NewClient) -> Response:
        client, secret = admin.create_client(
            body.name,
            body.kind,
            client_id=body.client_id,
            redirect_uris=tuple(body.redirect_uris),
            scopes=tuple(body.scopes) if body.scopes is not None else None,
            jwks=body.jwks,
            jwks_uri=body.jwks_uri,
            launch_types=tuple(body.launch_types),
            can_introspect=body.can_introspect,
        )
        extra = {"client_secret": secret} if secret else {}
        return JSONResponse({**client_json(client), **extra}, 201, headers={"Cache-Control": "no-store"})

    @router.post("/clients/{client_id}/{action}")
    @guarded
    async def client_action(request: Request, client_id: str, action: str) -> Response:
        if action not in ("disable", "enable"):
            raise NotFound(f"no action {action!r}")
        admin.set_client_disabled(client_id, action == "disable")
        return Response(status_code=204)
