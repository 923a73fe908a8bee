"""Every failure leaves as an OperationOutcome with the right status; never a stack trace."""

from __future__ import annotations

import logging
import traceback

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from fhir_server.errors import FhirError, Issue
from fhir_server.rest.outcome import outcome_bytes

log = logging.getLogger("fhir_server")
MEDIA_TYPE = "application/fhir+json; charset=utf-8"
_HTTP_CODES = {404: "not-found", 405: "not-supported", 401: "login", 403: "forbidden"}


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FhirError, _fhir_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


def error_response(status: int, issues: list[Issue], headers: dict[str, str] | None = None) -> Response:
    return Response(outcome_bytes(issues), status, headers or {}, media_type=MEDIA_TYPE)


async def _fhir_error(request: Request, error: FhirError) -> Response:
    return error_response(error.status, error.issues, error.headers)


async def _http_error(request: Request, error: HTTPException) -> Response:
    message = {
        404: f"Nothing is served at {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(error.status_code, str(error.detail))
    issue = Issue(message, code=_HTTP_CODES.get(error.status_code, "processing"))
    return error_response(error.status_code, [issue], dict(error.headers or {}))


async def _validation_error(request: Request, error: RequestValidationError) -> Response:
    problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in error.errors())
    return error_response(400, [Issue(f"The request is malformed: {problems}")])


async def _unexpected(request: Request, error: Exception) -> Response:
    # Log where it broke, not what it said: exception messages can carry patient data.
    frames = "".join(traceback.format_tb(error.__traceback__))
    log.error("unexpected %s on %s %s\n%s", type(error).__name__, request.method, request.url.path, frames)
    issue = Issue(
        "The server failed to handle this request. Nothing was changed; please retry,"
        " and report it if it persists.",
        code="exception",
        severity="fatal",
    )
    return error_response(500, [issue])


class CatchAll:
    """Pure ASGI middleware: an unexpected exception becomes a 500 OperationOutcome and is not re-raised,
    so no server log prints its message (which may hold patient data). Cheaper than BaseHTTPMiddleware."""

    def __init__(self, app: object) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, object], receive: object, send: object) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        started = False

        async def tracking_send(message: dict[str, object]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)  # type: ignore[operator]

        try:
            await self.app(scope, receive, tracking_send)  # type: ignore[operator]
        except Exception as error:
            if started:
                return  # too late for a clean answer; the connection closes
            request = Request(scope, receive)  # type: ignore[arg-type]
            response = await _unexpected(request, error)
            await response(scope, receive, send)  # type: ignore[arg-type]
