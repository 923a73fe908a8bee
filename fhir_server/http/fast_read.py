"""The hottest path, read by id (`GET [base]/[type]/[id]`), answered without the router.

Route matching over every FHIR and auth route costs as much as the read itself, so this pure ASGI
layer recognises the one shape and calls exactly what the route would: the same context (token,
access), the same read interaction (with its access checks), the same response building and
error handling. Any other request passes through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request

from fhir_server.errors import FhirError
from fhir_server.http.errors import error_response
from fhir_server.http.responses import fhir_response, presentation
from fhir_server.rest.context import RequestContext
from fhir_server.rest.read import read

Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
ContextFactory = Callable[[Request], Awaitable[RequestContext]]


class FastRead:
    def __init__(self, app: Asgi, *, prefix: str, context_for: ContextFactory) -> None:
        self.app = app
        self.prefix = prefix + "/"
        self.context_for = context_for

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        target = self._read_target(scope)
        if target is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            how = presentation(request)
            ctx = await self.context_for(request)
            result = await read(ctx, *target)
            response = fhir_response(result, how, ctx.base_url, request=request)
        except FhirError as error:
            response = error_response(error.status, error.issues, error.headers)
        await response(scope, receive, send)

    def _read_target(self, scope: dict[str, Any]) -> tuple[str, str] | None:
        """(type, id) for `GET {prefix}Type/id`; None for anything else."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        path: str = scope["path"]
        if not path.startswith(self.prefix):
            return None
        resource_type, slash, id = path[len(self.prefix) :].partition("/")
        if not slash or not id or "/" in id or not resource_type[:1].isupper() or id[0] in "_$":
            return None
        return resource_type, id
