"""FHIR delete and conditional delete. https://hl7.org/fhir/R4/http.html#delete · #3.1.0.7.1

A delete writes a tombstone version: reads then answer 410 Gone and history keeps it.
"""

from __future__ import annotations

from datetime import datetime

from fhir_server.access import guard
from fhir_server.errors import NotFound
from fhir_server.rest.common import require_id, require_type
from fhir_server.rest.context import RequestContext
from fhir_server.rest.planned import Planned, match_criteria
from fhir_server.rest.update import check_if_match
from fhir_server.rest.writes import plan_delete as tombstone


async def plan_delete(
    ctx: RequestContext, resource_type: str, id: str, now: datetime, *, if_match: int | None = None
) -> Planned:
    require_type(resource_type)
    require_id(id)
    guard.require_scope(ctx, "delete", resource_type)
    current = await ctx.store.read(resource_type, id)
    if current is None:
        raise NotFound(f"{resource_type}/{id} is not known")
    if current.deleted:
        await guard.require_readable(ctx, current)  # a deletion is as visible as what it deleted
    await guard.require_writable_existing(ctx, "delete", current)
    check_if_match(current, if_match, f"{resource_type}/{id}")
    if current.deleted:
        return Planned(204, existing=current)  # deleting twice changes nothing
    return Planned(204, tombstone(current, now), if_match=if_match is not None)


async def plan_conditional_delete(
    ctx: RequestContext, resource_type: str, criteria: str, now: datetime
) -> Planned:
    """DELETE [type]?criteria: no match is a no-op, one is deleted, several are 412."""
    require_type(resource_type)
    guard.require_scope(ctx, "delete", resource_type)
    match = await match_criteria(ctx, resource_type, criteria, "Conditional delete")
    if match is None:
        return Planned(204)
    await guard.require_writable_existing(ctx, "delete", match)
    return Planned(204, tombstone(match, now))
