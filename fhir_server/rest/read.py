"""FHIR read and vread. https://hl7.org/fhir/R4/http.html#read · #vread"""

from __future__ import annotations

from collections.abc import Sequence

from fhir_server import jsonio
from fhir_server.access import guard
from fhir_server.digits import CEILING, ascii_whole
from fhir_server.errors import BadRequest, Gone, NotFound
from fhir_server.rest.common import require_id, require_live, require_type
from fhir_server.rest.context import RequestContext
from fhir_server.rest.result import Result
from fhir_server.search.bundle import subset

Params = Sequence[tuple[str, str]]


async def read(ctx: RequestContext, resource_type: str, id: str, params: Params = ()) -> Result:
    require_type(resource_type)
    require_id(id)
    guard.require_scope(ctx, "read", resource_type)
    stored = await ctx.store.read(resource_type, id)
    if stored is not None:
        await guard.require_readable(ctx, stored)  # out of reach answers 404, like an unknown id
    return _shaped(Result(200, require_live(stored, resource_type, id)), params)


async def vread(
    ctx: RequestContext, resource_type: str, id: str, version: str, params: Params = ()
) -> Result:
    require_type(resource_type)
    require_id(id)
    guard.require_scope(ctx, "vread", resource_type)
    number = ascii_whole(version)
    if number is None:
        raise NotFound(f"{resource_type}/{id} has no version '{version}'; versions are whole numbers (0-9)")
    stored = await ctx.store.vread(resource_type, id, number) if number < CEILING else None
    if stored is None:
        raise NotFound(f"{resource_type}/{id} has no version {version}")
    await guard.require_version_readable(ctx, stored)
    if stored.deleted:
        raise Gone(f"Version {version} of {resource_type}/{id} is its deletion")
    return _shaped(Result(200, stored), params)


def _shaped(result: Result, params: Params) -> Result:
    """`_summary` / `_elements` apply to reads too (search.html#summary); the stored bytes otherwise."""
    asked = dict(params)
    summary, elements = asked.get("_summary"), asked.get("_elements")
    if (summary is None or summary == "false") and elements is None:
        return result
    if summary not in (None, "false", "true", "text", "data"):
        raise BadRequest(f"_summary={summary} does not apply to a read; use true, text, data or false")
    assert result.stored is not None
    wanted = tuple(e.strip() for e in elements.split(",") if e.strip()) if elements is not None else None
    shaped = subset(jsonio.loads(result.stored.body), summary, wanted)
    return Result(result.status, result.stored, body=jsonio.dumps(shaped))
