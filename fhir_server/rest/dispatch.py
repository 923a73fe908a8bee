"""Routing a GET by its path to the read-side interaction. Used for HTTP GETs and transaction GETs alike.

Paths are relative to the FHIR base: "", "_history", "Patient", "Patient/_history", "Patient/1",
"Patient/1/_history", "Patient/1/_history/2", "Patient/1/$everything", "Patient/1/Observation",
"Patient/1/*".
"""

from __future__ import annotations

from collections.abc import Sequence

from fhir_server.access import guard
from fhir_server.errors import BadRequest, NotFound
from fhir_server.rest import history as history_interaction
from fhir_server.rest import read as read_interaction
from fhir_server.rest import search as search_interaction
from fhir_server.rest.common import require_id, require_type
from fhir_server.rest.context import RequestContext
from fhir_server.rest.result import Result

Params = Sequence[tuple[str, str]]


async def run_get(ctx: RequestContext, path: str, params: Params) -> Result:
    segments = [s for s in path.strip("/").split("/") if s]
    if not segments:
        return await _search(ctx, None, params)
    if segments == ["_history"]:
        return await history_interaction.history(ctx, None, None, params)
    resource_type, rest = segments[0], segments[1:]
    if resource_type.startswith(("$", "_")):
        raise NotFound(f"'{resource_type}' is not an operation or interaction this server supports")
    require_type(resource_type)
    if not rest:
        return await _search(ctx, resource_type, params)
    if rest == ["_history"]:
        return await history_interaction.history(ctx, resource_type, None, params)
    return await _instance(ctx, resource_type, rest, params)


async def _instance(ctx: RequestContext, resource_type: str, rest: list[str], params: Params) -> Result:
    id = require_id(rest[0])
    tail = rest[1:]
    if not tail:
        return await read_interaction.read(ctx, resource_type, id, params)
    if tail == ["_history"]:
        return await history_interaction.history(ctx, resource_type, id, params)
    if len(tail) == 2 and tail[0] == "_history":
        return await read_interaction.vread(ctx, resource_type, id, tail[1], params)
    if resource_type == "Patient" and tail == ["$everything"]:
        guard.require_scope(ctx, "search", None)
        await guard.require_searchable(ctx, "Patient", id)  # another patient's: 404, as if unknown
        return Result(200, body=await search_interaction.everything(ctx, id, params))
    if resource_type == "Patient" and tail == ["*"]:
        return await _compartment_search_all(ctx, id, params)
    if resource_type == "Patient" and len(tail) == 1 and not tail[0].startswith(("$", "_")):
        compartment_type = require_type(tail[0])
        guard.require_scope(ctx, "search", compartment_type)
        body = await search_interaction.search_bundle(
            ctx, compartment_type, params, compartment=f"Patient/{id}"
        )
        return Result(200, body=body)
    raise BadRequest(f"'{resource_type}/{'/'.join(rest)}' is not a path this server understands")


async def _compartment_search_all(ctx: RequestContext, patient_id: str, params: Params) -> Result:
    """`GET [base]/Patient/[id]/*`: every type in the compartment (http.html#search), so the
    parameters are those of a search across all types (`_id`, `_lastUpdated`, `_tag`, ..., `_type`).
    Access as for a system search: a scope for some type, then the query narrowed to what the
    caller may see."""
    guard.require_scope(ctx, "search", None)
    body = await search_interaction.search_bundle(ctx, None, params, compartment=f"Patient/{patient_id}")
    return Result(200, body=body)


async def _search(ctx: RequestContext, resource_type: str | None, params: Params) -> Result:
    guard.require_scope(ctx, "search", resource_type)
    return Result(200, body=await search_interaction.search_bundle(ctx, resource_type, params))
