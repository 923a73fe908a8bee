"""FHIR update, update-as-create and conditional update.

https://hl7.org/fhir/R4/http.html#update · #cond-update · #concurrency (If-Match)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_server.access import guard
from fhir_server.errors import BadRequest, PreconditionFailed
from fhir_server.rest.common import require_id, require_type
from fhir_server.rest.context import RequestContext
from fhir_server.rest.planned import Planned, guarded, match_criteria_guarded
from fhir_server.rest.writes import new_id, plan_put
from fhir_server.storage.port import StoredResource
from fhir_server.validation import validate_resource


def check_if_match(current: StoredResource | None, if_match: int | None, where: str) -> None:
    """If-Match names the version the client saw; any other current version is 412."""
    if if_match is None:
        return
    actual = current.version_id if current else 0
    if current is None or actual != if_match:
        raise PreconditionFailed(
            f"{where}: If-Match asked for version {if_match} but the current version is "
            f"{actual if current else 'none (it does not exist)'}; read it again and retry"
        )


async def plan_update(
    ctx: RequestContext,
    resource_type: str,
    id: str,
    resource: dict[str, Any],
    now: datetime,
    *,
    if_match: int | None = None,
    server_id: bool = False,
) -> Planned:
    """PUT [type]/[id]. `server_id`: the server chose `id` (a conditional update matching nothing), so
    creating it is a create, open to callers who may not choose ids (guard.require_update_target)."""
    require_type(resource_type)
    require_id(id)
    guard.require_scope(ctx, "update", resource_type)
    validate_resource(resource, expected_type=resource_type, expected_id=id, require_id=True)
    current = await ctx.store.read(resource_type, id)
    if not server_id:
        await guard.require_update_target(ctx, resource_type, id, current)  # patients: no update-as-create
    await guard.require_writable_existing(ctx, "update", current)  # before If-Match: no version leaks
    check_if_match(current, if_match, f"{resource_type}/{id}")
    expected = current.version_id if current else 0
    created = current is None or current.deleted
    op = plan_put(resource, id, expected, now, own_base=ctx.base_url)
    await guard.require_writable_new(ctx, "update", op)
    return Planned(201 if created else 200, op, if_match=if_match is not None, location=created)


async def plan_conditional_update(
    ctx: RequestContext,
    resource_type: str,
    criteria: str,
    resource: dict[str, Any],
    now: datetime,
    *,
    if_match: int | None = None,
) -> Planned:
    """PUT [type]?criteria: no match creates, one match updates it, several are 412."""
    require_type(resource_type)
    guard.require_scope(ctx, "update", resource_type)
    match, unless_match = await match_criteria_guarded(ctx, resource_type, criteria, "Conditional update")
    body_id = resource.get("id")
    if match is None:  # created, unless a racing request makes the criteria match first
        chosen = isinstance(body_id, str)  # an id in the body makes this an update-as-create
        target = body_id if isinstance(body_id, str) else new_id()
        planned = await plan_update(
            ctx,
            resource_type,
            target,
            {**resource, "id": target},
            now,
            if_match=if_match,
            server_id=not chosen,
        )
        return guarded(planned, unless_match)
    if body_id is not None and body_id != match.id:
        raise BadRequest(
            f"The body's id '{body_id}' differs from {resource_type}/{match.id}, which the criteria match",
            expression=f"{resource_type}.id",
        )
    return await plan_update(
        ctx, resource_type, match.id, {**resource, "id": match.id}, now, if_match=if_match
    )
