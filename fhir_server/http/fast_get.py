"""The hot paths — every FHIR GET: read by id, search, history, vread — answered without the router.

Route matching and FastAPI's dependency solving cost as much as a read itself, so this pure ASGI
layer recognises `GET {base}/...` and calls exactly what the catch-all GET route would: the same
context (token, access), `rest.dispatch.run_get` (with its access checks), the same response
building and error handling. `metadata`, discovery and every other method pass through to the router.

HEAD (https://hl7.org/fhir/R4/http.html#general: servers SHOULD support it wherever GET is) is a GET
whose answer keeps its status and headers and loses its body, so it can never differ from GET's.

Every request below the base passes here first, so this is also where one trailing slash is dropped
(`PUT Patient/1/` is `PUT Patient/1`), for all methods alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request

from fhir_server.errors import FhirError
from fhir_server.http.errors import error_response
from fhir_server.http.responses import fhir_response, presentation
from fhir_server.rest.context import RequestContext
from fhir_server.rest.dispatch import run_get

Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
ContextFactory = Callable[[Request], Awaitable[RequestContext]]
_ROUTED = ("metadata", ".well-known")  # GETs the router serves itself


class FastGet:
    def __init__(self, app: Asgi, *, prefix: str, context_for: ContextFactory) -> None:
        self.app = app
        self.prefix = prefix + "/"
        self.context_for = context_for

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self._trailing_slash(scope["path"]):
            scope = _without_trailing_slash(scope)
        if scope["type"] == "http" and scope["method"] == "HEAD" and self._below_base(scope["path"]):
            scope, send = {**scope, "method": "GET"}, _headers_only(send)
        path = self._fhir_get_path(scope)
        if path is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            how = presentation(request)
            ctx = await self.context_for(request)
            result = await run_get(ctx, path, request.query_params.multi_items())
            response = fhir_response(result, how, ctx.base_url, request=request)
        except FhirError as error:
            response = error_response(error.status, error.issues, error.headers)
        await response(scope, receive, send)

    def _trailing_slash(self, path: str) -> bool:
        """`Patient/1/`: below the base (not the base itself), ending in one slash."""
        return path.endswith("/") and path.startswith(self.prefix) and len(path) > len(self.prefix)

    def _below_base(self, path: str) -> bool:
        return path.startswith(self.prefix) or path == self.prefix[:-1]

    def _fhir_get_path(self, scope: dict[str, Any]) -> str | None:
        """The path below the FHIR base of a GET this layer answers; None for anything else."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        path: str = scope["path"]
        if not path.startswith(self.prefix):
            return None
        below = path[len(self.prefix) :]
        return None if below.split("/", 1)[0] in _ROUTED else below


def _without_trailing_slash(scope: dict[str, Any]) -> dict[str, Any]:
    """The request without its path's last `/`, so every method answers `Patient/1/` as `Patient/1`
    (a GET always did; PUT, PATCH, DELETE and POST answered 405)."""
    raw = scope.get("raw_path")
    trimmed = raw[:-1] if isinstance(raw, bytes) and raw.endswith(b"/") else raw
    return {**scope, "path": scope["path"][:-1], "raw_path": trimmed}


def _headers_only(send: Any) -> Any:
    """`send` for a HEAD request: the GET answer's start (status, headers, Content-Length) as it is,
    and its body left out."""

    async def without_body(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)

    return without_body
