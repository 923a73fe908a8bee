"""FHIR delete and conditional delete. https://hl7.org/fhir/R4/http.html#delete · #3.1.0.7.1

A delete writes a tombstone version: reads then answer 410 Gone and history keeps it.
"""

from __future__ import annotations

from datetime import datetime

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
    current = await ctx.store.read(resource_type, id)
    if current is None:
        raise NotFound(f"{resource_type}/{id} is not known")
    check_if_match(current, if_match, f"{resource_type}/{id}")
    if current.deleted:
        return Planned(204, existing=current)  # deleting twice changes nothing
    return Planned(204, tombstone(current, now), if_match=if_match is not None)


async def plan_conditional_delete(
    ctx: RequestContext, resource_type: str, criteria: str, now: datetime
) -> Planned:
    """DELETE [type]?criteria: no match is a no-op, one is deleted, several are 412."""
    require_type(resource_type)
    match = await match_criteria(ctx, resource_type, criteria, "Conditional delete")
    if match is None:
        return Planned(204)
    return Planned(204, tombstone(match, now))
