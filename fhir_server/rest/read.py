"""FHIR read and vread. https://hl7.org/fhir/R4/http.html#read · #vread"""

from __future__ import annotations

from fhir_server.access import guard
from fhir_server.errors import Gone, NotFound
from fhir_server.rest.common import require_id, require_live, require_type
from fhir_server.rest.context import RequestContext
from fhir_server.rest.result import Result


async def read(ctx: RequestContext, resource_type: str, id: str) -> Result:
    require_type(resource_type)
    require_id(id)
    guard.require_scope(ctx, "read", resource_type)
    stored = await ctx.store.read(resource_type, id)
    if stored is not None:
        await guard.require_readable(ctx, stored)  # out of reach answers 404, like an unknown id
    return Result(200, require_live(stored, resource_type, id))


async def vread(ctx: RequestContext, resource_type: str, id: str, version: str) -> Result:
    require_type(resource_type)
    require_id(id)
    guard.require_scope(ctx, "vread", resource_type)
    if not version.isdigit():
        raise NotFound(f"{resource_type}/{id} has no version '{version}'; versions are whole numbers")
    stored = await ctx.store.vread(resource_type, id, int(version))
    if stored is None:
        raise NotFound(f"{resource_type}/{id} has no version {version}")
    await guard.require_version_readable(ctx, stored)
    if stored.deleted:
        raise Gone(f"Version {version} of {resource_type}/{id} is its deletion")
    return Result(200, stored)
