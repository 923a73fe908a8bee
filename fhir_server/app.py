"""The composition root: the one place that picks adapters and wires the layers together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse

from fhir_server.access.audit import AuditMiddleware
from fhir_server.access.bearer import access_from_header, verifier_of
from fhir_server.access.context import AccessContext
from fhir_server.http.errors import CatchAll, install_error_handlers
from fhir_server.http.responses import is_lenient
from fhir_server.http.routes import fhir_router
from fhir_server.rest.context import RequestContext
from fhir_server.rest.writes import format_instant, new_id, plan_put, utc_now
from fhir_server.settings import Settings
from fhir_server.storage.port import Store

FHIR_PREFIX = "/fhir"
# Served without a token (SMART: discovery and the CapabilityStatement are public).
OPEN_PATHS = (FHIR_PREFIX + "/metadata", FHIR_PREFIX + "/.well-known/smart-configuration")


def make_store(settings: Settings) -> Store:
    """Pick the storage adapter from the storage URL (sqlite by default)."""
    url = settings.storage_url or ""
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from fhir_server.storage.mongo import MongoStore  # imported only when asked for

        return MongoStore(url)
    from fhir_server.storage.sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path, synchronous=settings.sqlite_synchronous)


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    the_store = store or make_store(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await the_store.open()
        try:
            if settings.demo:
                from seed_data.demo import load_demo_once

                await load_demo_once(the_store)
            yield
        finally:
            await the_store.close()

    app = FastAPI(title="FHIR R4 server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.store = the_store
    app.state.started = format_instant(utc_now())
    app.state.security_extension = lambda base_url: None
    install_error_handlers(app)

    def base_url_of(request: Request) -> str:
        return settings.base_url or str(request.base_url).rstrip("/") + FHIR_PREFIX

    async def context_for(request: Request) -> RequestContext:
        base_url = base_url_of(request)
        access = await access_for(request, base_url)
        request.state.access = access  # for the audit middleware
        return RequestContext(the_store, base_url, strict=not is_lenient(request), access=access)

    async def access_for(request: Request, base_url: str) -> AccessContext | None:
        """The caller's access (401 without a valid token); None when auth is off or the path is open."""
        # Exact paths only: a suffix test would open e.g. GET /fhir/Basic/metadata (a read).
        if not settings.auth or request.url.path in OPEN_PATHS:
            return None
        header, verifier = request.headers.get("authorization"), verifier_of(request.app.state)
        return await access_from_header(the_store, header, verifier, base_url, utc_now())

    app.state.context_for = context_for
    app.include_router(fhir_router(context_for), prefix=FHIR_PREFIX)

    @app.get("/")
    async def root(request: Request) -> JSONResponse:
        return JSONResponse({"fhir": base_url_of(request), "metadata": base_url_of(request) + "/metadata"})

    async def record_audit(event: dict[str, Any]) -> None:
        await the_store.write([plan_put(event, new_id(), 0, utc_now(), method="POST")])

    app.add_middleware(AuditMiddleware, record=record_audit)
    _add_cors(app, settings)
    app.add_middleware(CatchAll)
    return app


def _add_cors(app: FastAPI, settings: Settings) -> None:
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "If-None-Exist", "Prefer"],
            expose_headers=["ETag", "Location", "Last-Modified"],
        )

