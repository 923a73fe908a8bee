"""Committing a planned write, re-planning when another writer got there first.

Without If-Match a lost race is retried from a fresh read (the client asked for "this content",
not "this content on top of version n"); with If-Match it is the client's 412.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fhir_server.errors import VersionConflict
from fhir_server.rest.context import RequestContext
from fhir_server.rest.planned import Planned
from fhir_server.rest.result import Result
from fhir_server.rest.writes import version_conflict_error

ATTEMPTS = 5


async def commit(ctx: RequestContext, plan: Callable[[], Awaitable[Planned]]) -> Result:
    for attempt in range(ATTEMPTS):
        planned = await plan()
        if planned.op is None:
            return Result(planned.status, planned.existing, location=planned.location)
        try:
            [stored] = await ctx.store.write([planned.op])
        except VersionConflict as error:
            if planned.if_match or attempt == ATTEMPTS - 1:
                raise version_conflict_error(error, if_match=planned.if_match) from None
            continue
        return Result(planned.status, stored, location=planned.location)
    raise AssertionError("unreachable: the loop returns or raises")
