"""The FHIR REST routes: parse the HTTP request, pick the interaction, write the HTTP response.

Everything FHIR-specific happens in fhir_server.rest; this module only moves bytes and headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from fhir_server import jsonio
from fhir_server.access import guard
from fhir_server.errors import BadRequest, UnsupportedMediaType
from fhir_server.http.negotiation import check_request_media_type
from fhir_server.http.responses import fhir_response, presentation
from fhir_server.rest import bundle as bundle_interaction
from fhir_server.rest import search as search_interaction
from fhir_server.rest.capabilities import capability_statement
from fhir_server.rest.commit import commit
from fhir_server.rest.common import parse_json, parse_json_body, require_type
from fhir_server.rest.context import RequestContext
from fhir_server.rest.create import plan_create
from fhir_server.rest.delete import plan_conditional_delete, plan_delete
from fhir_server.rest.dispatch import run_get
from fhir_server.rest.patch import plan_patch
from fhir_server.rest.planned import Planned
from fhir_server.rest.result import Result
from fhir_server.rest.update import plan_conditional_update, plan_update
from fhir_server.rest.validate_op import validate_operation
from fhir_server.rest.writes import parse_etag, utc_now

ContextFactory = Callable[[Request], Awaitable[RequestContext]]
FORM = "application/x-www-form-urlencoded"


def fhir_router(context_for: ContextFactory) -> APIRouter:
    """All FHIR interactions under the FHIR base; `context_for` resolves store, base URL and access."""
    router = APIRouter()

    statements: dict[str, bytes] = {}  # per base URL: the statement only changes with the code

    @router.get("/metadata")
    async def metadata(request: Request) -> Response:
        ctx = await context_for(request)
        how = presentation(request)
        if ctx.base_url not in statements:
            state = request.app.state
            security = state.security_extension(ctx.base_url)
            statement = capability_statement(ctx.base_url, security, state.started)
            statements[ctx.base_url] = jsonio.dumps(statement)
        response = fhir_response(Result(200, body=statements[ctx.base_url]), how, ctx.base_url)
        response.headers["Access-Control-Allow-Origin"] = "*"  # SMART: discovery is open to any origin
        return response

    # Every other GET (read, vread, search, history, compartments, $everything) is routed by path in
    # rest.dispatch. http.fast_get answers these before the router; the route stays for the bare base
    # URL and for an app mounted without that layer.
    @router.get("/{path:path}")
    @router.get("")
    async def get(request: Request, path: str = "") -> Response:
        how, ctx = presentation(request), await context_for(request)
        result = await run_get(ctx, path, request.query_params.multi_items())
        return fhir_response(result, how, ctx.base_url, request=request)

    @router.post("/")
    @router.post("")
    async def batch_or_transaction(request: Request) -> Response:
        how, ctx = presentation(request), await context_for(request)
        check_request_media_type(request.headers.get("content-type"))
        bundle = parse_json_body(await request.body())
        result = await bundle_interaction.process_bundle(ctx, bundle, run_get, owned=True)
        return fhir_response(result, how, ctx.base_url)

    @router.post("/{resource_type}/_search")
    async def search_by_post(request: Request, resource_type: str) -> Response:
        how, ctx = presentation(request), await context_for(request)
        require_type(resource_type)
        guard.require_scope(ctx, "search", resource_type)
        form = _search_form(request.headers.get("content-type"), await request.body())
        params = [*request.query_params.multi_items(), *form]
        body = await search_interaction.search_bundle(ctx, resource_type, params)
        return fhir_response(Result(200, body=body), how, ctx.base_url)

    # The same at system level and in a compartment (http.html#search: `POST [base]/_search`,
    # `POST [base]/[Compartment]/[id]/[type]/_search`): the form's parameters join the URL's and the
    # search runs as its GET would.
    @router.post("/_search")
    @router.post("/{compartment}/{id}/{resource_type}/_search")
    async def search_elsewhere_by_post(
        request: Request, compartment: str = "", id: str = "", resource_type: str = ""
    ) -> Response:
        how, ctx = presentation(request), await context_for(request)
        form = _search_form(request.headers.get("content-type"), await request.body())
        path = f"{compartment}/{id}/{resource_type}" if compartment else ""
        result = await run_get(ctx, path, [*request.query_params.multi_items(), *form])
        return fhir_response(result, how, ctx.base_url)

    @router.post("/{resource_type}/$validate")
    @router.post("/{resource_type}/{id}/$validate")
    async def validate(request: Request, resource_type: str, id: str | None = None) -> Response:
        how, ctx = presentation(request), await context_for(request)
        check_request_media_type(request.headers.get("content-type"))
        body = parse_json_body(await request.body())
        return fhir_response(validate_operation(resource_type, body, id), how, ctx.base_url)

    @router.post("/{resource_type}")
    async def create(request: Request, resource_type: str) -> Response:
        how, ctx = presentation(request), await context_for(request)
        check_request_media_type(request.headers.get("content-type"))
        resource = parse_json_body(await request.body())
        if_none_exist = _create_criteria(request)

        async def plan() -> Planned:
            return await plan_create(ctx, resource_type, resource, utc_now(), if_none_exist=if_none_exist)

        return fhir_response(await commit(ctx, plan), how, ctx.base_url, write=True)

    @router.put("/{resource_type}/{id}")
    @router.put("/{resource_type}")
    async def update(request: Request, resource_type: str, id: str | None = None) -> Response:
        how, ctx = presentation(request), await context_for(request)
        check_request_media_type(request.headers.get("content-type"))
        resource = parse_json_body(await request.body())
        if_match = _if_match(request)
        criteria = request.url.query

        async def plan() -> Planned:
            if id is None:
                if not criteria:
                    raise BadRequest("PUT needs an id (PUT [type]/[id]) or search criteria (PUT [type]?...)")
                return await plan_conditional_update(
                    ctx, resource_type, criteria, resource, utc_now(), if_match=if_match
                )
            _no_criteria(request, ctx, "PUT [type]/[id]")
            return await plan_update(ctx, resource_type, id, resource, utc_now(), if_match=if_match)

        return fhir_response(await commit(ctx, plan), how, ctx.base_url, write=True)

    @router.patch("/{resource_type}/{id}")
    async def patch(request: Request, resource_type: str, id: str) -> Response:
        how, ctx = presentation(request), await context_for(request)
        check_request_media_type(request.headers.get("content-type"), patch=True)
        operations = _json_any(await request.body())
        if_match = _if_match(request)
        _no_criteria(request, ctx, "PATCH [type]/[id]")

        async def plan() -> Planned:
            return await plan_patch(ctx, resource_type, id, operations, utc_now(), if_match=if_match)

        return fhir_response(await commit(ctx, plan), how, ctx.base_url, write=True)

    @router.delete("/{resource_type}/{id}")
    @router.delete("/{resource_type}")
    async def delete(request: Request, resource_type: str, id: str | None = None) -> Response:
        how, ctx = presentation(request), await context_for(request)
        if_match = _if_match(request)
        criteria = request.url.query

        async def plan() -> Planned:
            if id is None:
                if not criteria:
                    raise BadRequest(
                        "DELETE needs an id (DELETE [type]/[id]) or search criteria (DELETE [type]?...)"
                    )
                return await plan_conditional_delete(ctx, resource_type, criteria, utc_now())
            _no_criteria(request, ctx, "DELETE [type]/[id]")
            return await plan_delete(ctx, resource_type, id, utc_now(), if_match=if_match)

        return fhir_response(await commit(ctx, plan), how, ctx.base_url, write=True)

    return router


def _search_form(content_type: str | None, body: bytes) -> list[tuple[str, str]]:
    """The parameters of a `POST [type]/_search` body, which http.html#search says is
    application/x-www-form-urlencoded: any other type is a 415, a body that is not such a form a 400
    (ignoring either would answer a search the client did not ask for)."""
    if not body.strip():
        return []
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind != FORM:
        raise UnsupportedMediaType(
            f"POST _search takes its parameters as {FORM}, not '{kind or 'no Content-Type'}'"
        )
    try:
        fields = [field for field in body.decode("utf-8").split("&") if field]
    except UnicodeDecodeError:
        raise BadRequest(f"The body is not a {FORM} form: it is not UTF-8") from None
    broken = [field for field in fields if "=" not in field]
    if broken:
        raise BadRequest(f"The body is not a {FORM} form: '{broken[0][:60]}' is no name=value pair")
    return parse_qsl("&".join(fields), keep_blank_values=True)


def _criteria(request: Request) -> list[tuple[str, str]]:
    """The query's parameters but `_format` and `_pretty`, which say how to answer."""
    return search_interaction.criteria_only(request.query_params.multi_items())


def _create_criteria(request: Request) -> str | None:
    """A conditional create's criteria: the If-None-Exist header (https://hl7.org/fhir/R4/http.html#ccreate)
    or, as some servers and clients (fhirpy's get_or_create) do, the query of `POST [type]?criteria`."""
    header, query = request.headers.get("if-none-exist"), _criteria(request)
    if header is not None and not header.strip():
        raise BadRequest(
            "If-None-Exist is empty: give search criteria such as 'identifier=x|1', or drop the header "
            "for an unconditional create"
        )
    if header is not None and query:
        raise BadRequest(
            "A conditional create takes its criteria once: in If-None-Exist or in the URL's query, not both"
        )
    return header if header is not None else (urlencode(query) if query else None)


def _no_criteria(request: Request, ctx: RequestContext, interaction: str) -> None:
    """A write to one resource takes no search parameters: under strict handling, say so rather than
    ignore them (a client that meant a conditional write must not update the wrong resource)."""
    names = sorted({name for name, _ in _criteria(request)})
    if names and ctx.strict:
        raise BadRequest(
            f"{interaction} takes no search parameters, but the URL has {', '.join(names)}; "
            "drop them, or use the conditional form [type]?criteria"
        )


def _if_match(request: Request) -> int | None:
    header = request.headers.get("if-match")
    if header is None:
        return None
    version = parse_etag(header)
    if version is None:
        raise BadRequest(f"If-Match '{header}' is not a version ETag such as W/\"3\"")
    return version


def _json_any(body: bytes) -> Any:
    return parse_json(body)
