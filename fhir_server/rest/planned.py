"""A write interaction in two steps: plan (read, check, validate) and commit (one atomic store write).

Standalone interactions plan and commit one op; a transaction Bundle plans every entry first and
commits all ops in one store write, so both paths share the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from fhir_server.errors import BadRequest, PreconditionFailed
from fhir_server.rest.context import RequestContext
from fhir_server.storage.port import StoredResource, WriteOp


@dataclass(frozen=True, slots=True)
class Planned:
    """What a write will do: `op` to commit (None: nothing to write), and the answer's status."""

    status: int
    op: WriteOp | None = None
    existing: StoredResource | None = None  # the resource answered when nothing is written
    if_match: bool = False  # the client named a version: a lost race is 412, not a retry
    location: bool = False


def criteria_params(criteria: str) -> list[tuple[str, str]]:
    """`identifier=a|b&name=x` (a conditional URL's query, or If-None-Exist) as (name, value) pairs."""
    query = criteria.split("?", 1)[1] if "?" in criteria else criteria
    params = parse_qsl(query, keep_blank_values=True)
    if not params:
        raise BadRequest(f"The search criteria '{criteria}' are empty; a conditional request needs some")
    return params


async def match_criteria(
    ctx: RequestContext, resource_type: str, criteria: str, what: str
) -> StoredResource | None:
    """The one resource matching `criteria`, None for no match, 412 for several (spec: many → 412)."""
    from fhir_server.rest.search import find_matches  # search sits beside the write interactions

    matches = await find_matches(ctx, resource_type, criteria_params(criteria), limit=2)
    if len(matches) > 1:
        raise PreconditionFailed(
            f"{what}: the criteria '{criteria}' match more than one {resource_type}; make them more selective"
        )
    return matches[0] if matches else None
