"""The hot paths — every FHIR GET: read by id, search, history, vread — answered without the router.

Route matching and FastAPI's dependency solving cost as much as a read itself, so this pure ASGI
layer recognises `GET {base}/...` and calls exactly what the catch-all GET route would: the same
context (token, access), `rest.dispatch.run_get` (with its access checks), the same response
building and error handling. `metadata`, discovery and every other method pass through to the router.
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

    def _fhir_get_path(self, scope: dict[str, Any]) -> str | None:
        """The path below the FHIR base of a GET this layer answers; None for anything else."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        path: str = scope["path"]
        if not path.startswith(self.prefix):
            return None
        below = path[len(self.prefix) :]
        return None if below.split("/", 1)[0] in _ROUTED else below
