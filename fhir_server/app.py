"""The composition root: the one place that picks adapters and wires the layers together."""

from __future__ import annotations

import gc
import inspect
import logging
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
from fhir_server.http.fast_get import FastGet
from fhir_server.http.responses import is_lenient
from fhir_server.http.routes import fhir_router
from fhir_server.indexing.entries import INDEX_VERSION
from fhir_server.portal.picker import patients_for_user
from fhir_server.rest.context import RequestContext
from fhir_server.rest.planning import Planner
from fhir_server.rest.writes import format_instant, new_id, plan_put, utc_now
from fhir_server.settings import Settings
from fhir_server.storage.port import Store
from smart_auth import AuthConfig, AuthService

FHIR_PREFIX = "/fhir"
AUTH_PREFIX = "/auth"
# Served without a token (SMART: discovery and the CapabilityStatement are public).
log = logging.getLogger(__name__)

OPEN_PATHS = (FHIR_PREFIX + "/metadata", FHIR_PREFIX + "/.well-known/smart-configuration")


def make_store(settings: Settings) -> Store:
    """Pick the storage adapter from the storage URL (sqlite by default)."""
    url = settings.storage_url or ""
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from fhir_server.storage.mongo import MongoStore  # imported only when asked for

        return MongoStore(url)
    from fhir_server.storage.sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path, synchronous=settings.sqlite_synchronous)


async def _warn_if_index_is_older(store: Store) -> None:
    """An index made by an older version misses what that version did not extract (see
    INDEX_VERSION): the server runs, and says how to bring it up to date."""
    version = await store.index_version()
    if version < INDEX_VERSION:
        log.warning(
            "The search index was made by an older version of this server (index version %d, now %d):"
            " some searches miss resources until `fhir-server reindex` is run on this store",
            version,
            INDEX_VERSION,
        )


def make_auth(settings: Settings, store: Store) -> AuthService | None:
    """The SMART authorization server, beside the FHIR API (".../fhir" -> issuer ".../auth")."""
    if not settings.auth:
        return None
    if not settings.base_url:
        raise ValueError("SMART authorization needs a fixed public base URL: set FHIR_BASE_URL or --base-url")
    config = AuthConfig.beside(settings.base_url, settings.data_dir / "auth.sqlite3")
    return AuthService(config, patients_for_user=patients_for_user(store))


def server_app() -> FastAPI:
    """The app as `fhir-server serve` runs it: uvicorn's factory, called once in each worker process."""
    return create_app(Settings.from_env(), freeze_after_start=True)


def create_app(
    settings: Settings | None = None, *, store: Store | None = None, freeze_after_start: bool = False
) -> FastAPI:
    """`freeze_after_start`: once started, move everything loaded so far (models, registries, value
    sets: a large heap that lives as long as the process) out of the cyclic collector's reach, so its
    collections, which every request's allocations trigger, stop walking it again and again."""
    settings = settings or Settings.from_env()
    the_store = store or make_store(settings)
    auth = make_auth(settings, the_store)
    planner = Planner()  # worker processes for large transactions, started on first use

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await the_store.open()
        await _warn_if_index_is_older(the_store)
        if auth is not None:
            await auth.open()
        try:
            if settings.demo:
                from seed_data.demo import load_demo_once

                await load_demo_once(the_store)
                if auth is not None:
                    from seed_data.accounts import create_demo_accounts

                    await create_demo_accounts(auth, the_store, settings.data_dir)
            if freeze_after_start:
                gc.collect()
                gc.freeze()
            yield
        finally:
            if auth is not None:
                await auth.close()
            planner.close()
            await the_store.close()

    app = FastAPI(
        title="FHIR R4 server",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        **_no_telemetry(),
    )
    app.state.settings = settings
    app.state.store = the_store
    app.state.started = format_instant(utc_now())
    app.state.auth = auth  # access.bearer.verifier_of() verifies tokens with it
    app.state.security_extension = lambda base_url: auth.capability_security() if auth else None
    install_error_handlers(app)
    if auth is not None:
        _mount_discovery(app, auth)

    def base_url_of(request: Request) -> str:
        return settings.base_url or str(request.base_url).rstrip("/") + FHIR_PREFIX

    async def context_for(request: Request) -> RequestContext:
        base_url = base_url_of(request)
        access = await access_for(request, base_url)
        request.state.access = access  # for the audit middleware
        return RequestContext(
            the_store, base_url, strict=not is_lenient(request), access=access, planner=planner
        )

    async def access_for(request: Request, base_url: str) -> AccessContext | None:
        """The caller's access (401 without a valid token); None when auth is off or the path is open."""
        # Exact paths only: a suffix test would open e.g. GET /fhir/Basic/metadata (a read).
        if not settings.auth or request.url.path in OPEN_PATHS:
            return None
        header, verifier = request.headers.get("authorization"), verifier_of(request.app.state)
        return await access_from_header(the_store, header, verifier, base_url, utc_now())

    app.state.context_for = context_for
    app.include_router(fhir_router(context_for), prefix=FHIR_PREFIX)
    if auth is not None:
        app.include_router(auth.router, prefix=AUTH_PREFIX)

    @app.get("/")
    async def root(request: Request) -> JSONResponse:
        return JSONResponse({"fhir": base_url_of(request), "metadata": base_url_of(request) + "/metadata"})

    async def record_audit(events: list[dict[str, Any]]) -> None:
        """A request's events (one per patient it touched) in one store write."""
        now = utc_now()
        await the_store.write([plan_put(event, new_id(), 0, now, method="POST") for event in events])

    app.add_middleware(FastGet, prefix=FHIR_PREFIX, context_for=context_for)  # inside the audit layer
    app.add_middleware(AuditMiddleware, record=record_audit)
    _add_cors(app, settings)
    app.add_middleware(CatchAll)
    return app


def _no_telemetry() -> dict[str, Any]:
    """FastAPI's built-in OpenTelemetry off: spans and logs would carry URLs (search parameters are
    patient data), and checking for it costs every request ~10 µs. Older FastAPI has no such option."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}


def _mount_discovery(app: FastAPI, auth: AuthService) -> None:
    """SMART discovery under the FHIR base, mounted before the FHIR routes would claim the path."""

    @app.get(FHIR_PREFIX + "/.well-known/smart-configuration")
    async def smart_configuration() -> JSONResponse:
        # SMART: application/json whatever Accept says, open to any origin.
        return JSONResponse(auth.smart_configuration(), headers={"Access-Control-Allow-Origin": "*"})


def _add_cors(app: FastAPI, settings: Settings) -> None:
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "If-None-Exist", "Prefer"],
            expose_headers=["ETag", "Location", "Last-Modified"],
        )
