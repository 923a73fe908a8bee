"""A write interaction in two steps: plan (read, check, validate) and commit (one atomic store write).

Standalone interactions plan and commit one op; a transaction Bundle plans every entry first and
commits all ops in one store write, so both paths share the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import parse_qsl

from fhir_server.errors import BadRequest, PreconditionFailed
from fhir_server.rest.context import RequestContext
from fhir_server.search.query import SearchQuery
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
    return (await match_criteria_guarded(ctx, resource_type, criteria, what))[0]


async def match_criteria_guarded(
    ctx: RequestContext, resource_type: str, criteria: str, what: str
) -> tuple[StoredResource | None, SearchQuery]:
    """`match_criteria`, and the search it ran: a write made because nothing matched carries it as
    `WriteOp.unless_match`, so the store refuses the write if a racing request matched meanwhile."""
    from fhir_server.rest.search import criteria_query  # search sits beside the write interactions

    query = await criteria_query(ctx, resource_type, criteria_params(criteria), limit=2)
    matches = (await ctx.store.search(query)).matches
    if len(matches) > 1:
        raise PreconditionFailed(
            f"{what}: the criteria '{criteria}' match more than one {resource_type}; make them more selective"
        )
    return (matches[0] if matches else None), replace(query, count=1)


def guarded(planned: Planned, unless_match: SearchQuery | None) -> Planned:
    """The planned write, to be committed only while `unless_match` matches nothing."""
    if unless_match is None or planned.op is None:
        return planned
    return replace(planned, op=replace(planned.op, unless_match=unless_match))
