"""FHIR create and conditional create. https://hl7.org/fhir/R4/http.html#create · #ccreate"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_server.access import guard
from fhir_server.rest.common import require_type
from fhir_server.rest.context import RequestContext
from fhir_server.rest.planned import Planned, guarded, match_criteria_guarded
from fhir_server.rest.writes import new_id, plan_put
from fhir_server.storage.port import WriteOp
from fhir_server.validation import validate_resource


async def plan_create(
    ctx: RequestContext,
    resource_type: str,
    resource: dict[str, Any],
    now: datetime,
    *,
    if_none_exist: str | None = None,
    id: str | None = None,
    prepared: WriteOp | None = None,
) -> Planned:
    """Create with a server-assigned id (the body's id is ignored, as the spec says).

    `prepared`: the op already validated and indexed elsewhere (rest.planning, for a large
    transaction); the access checks still run here."""
    require_type(resource_type)
    guard.require_scope(ctx, "create", resource_type)
    body = {k: v for k, v in resource.items() if k != "id"}
    if prepared is None:
        validate_resource(body, expected_type=resource_type)
    unless_match = None
    if if_none_exist:
        existing, unless_match = await match_criteria_guarded(
            ctx, resource_type, if_none_exist, "If-None-Exist"
        )
        if existing is not None:
            return Planned(200, existing=existing, location=True)
    op = prepared or plan_put(body, id or new_id(), 0, now, method="POST", own_base=ctx.base_url)
    await guard.require_writable_new(ctx, "create", op)  # e.g. not for another patient
    return guarded(Planned(201, op, location=True), unless_match)
