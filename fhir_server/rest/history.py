"""FHIR history at instance, type and system level. https://hl7.org/fhir/R4/http.html#history"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlencode

import orjson

from fhir_server.access import guard
from fhir_server.digits import ascii_whole
from fhir_server.errors import BadRequest, NotFound
from fhir_server.indexing.normalize import date_bounds
from fhir_server.instants import from_micros, to_micros
from fhir_server.rest.common import require_id, require_type
from fhir_server.rest.context import RequestContext
from fhir_server.rest.result import Result
from fhir_server.rest.writes import format_instant
from fhir_server.storage.port import HistoryPage, HistoryQuery, StoredResource

DEFAULT_COUNT = 50
MAX_COUNT = 1000
_FIRST, _LAST = to_micros(datetime.min.replace(tzinfo=UTC)), to_micros(datetime.max.replace(tzinfo=UTC))
_KNOWN = {"_since", "_at", "_count", "_offset", "_format", "_pretty", "_list"}


async def history(
    ctx: RequestContext,
    resource_type: str | None,
    id: str | None,
    params: Sequence[tuple[str, str]],
) -> Result:
    if resource_type is not None:
        require_type(resource_type)
    guard.require_scope(ctx, "history", resource_type)
    if id is not None:
        require_id(id)
    # The parameters before the id: a bad one is a 400 whether or not the id exists, or a 400 after
    # a 404-or-not would tell anyone which ids exist, whoever's they are.
    query = _parse(resource_type, id, params, strict=ctx.strict)
    if id is not None:
        assert resource_type is not None
        if await ctx.store.read(resource_type, id) is None:
            raise NotFound(f"{resource_type}/{id} is not known")
    if id is None:
        query = replace(query, type_filter=guard.history_types(ctx, resource_type))
    # A restricted caller's instance history is judged version by version (None: unrestricted).
    restricted = await guard.instance_history(ctx, query) if id is not None else None
    page = restricted or await ctx.store.history(query)
    return Result(200, body=orjson.dumps(_bundle(ctx, query, page, params)))


def _parse(
    resource_type: str | None, id: str | None, params: Sequence[tuple[str, str]], *, strict: bool
) -> HistoryQuery:
    values: dict[str, str] = {}
    for name, value in params:
        if name not in _KNOWN:
            if strict:
                raise BadRequest(
                    f"'{name}' is not a history parameter; use _since, _at, _count or _offset",
                    expression=name,
                )
            continue
        values[name] = value
    return HistoryQuery(
        resource_type=resource_type,
        id=id,
        since=_instant(values, "_since"),
        at=_instant(values, "_at"),
        count=_whole(values, "_count", DEFAULT_COUNT, 0, MAX_COUNT),
        offset=_whole(values, "_offset", 0, 0, 10**9),
    )


def _instant(values: dict[str, str], name: str) -> datetime | None:
    if name not in values:
        return None
    try:
        low, high = date_bounds(values[name])
    except ValueError:
        raise BadRequest(f"{name}='{values[name]}' is not a FHIR instant or date", expression=name) from None
    # _since: versions at or after the start of the given moment; _at: as it stood at its end.
    # A moment outside datetime's years 1-9999 (`0000-01-01`, `0001-01-01T00:00+14:00`) is moved to
    # the nearest one it can hold: no version was written before year 1 or after 9999, so the
    # versions selected are the same.
    micros = low if name == "_since" else high - 1
    return from_micros(min(max(micros, _FIRST), _LAST))


def _whole(values: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = values.get(name)
    if text is None:
        return default
    number = ascii_whole(text)
    if number is None:
        raise BadRequest(f"{name}='{text}' must be a whole number written in the digits 0-9", expression=name)
    return max(low, min(number, high))


def _bundle(
    ctx: RequestContext, query: HistoryQuery, page: HistoryPage, params: Sequence[tuple[str, str]]
) -> dict[str, object]:
    path = "/".join(p for p in (query.resource_type, query.id, "_history") if p)
    base = f"{ctx.base_url}/{path}"
    kept = [(k, v) for k, v in params if k in _KNOWN and k != "_offset"]
    links = [{"relation": "self", "url": _link(base, kept, query.offset)}]
    if page.next_offset is not None:
        links.append({"relation": "next", "url": _link(base, kept, page.next_offset)})
    if query.offset > 0:
        links.append({"relation": "previous", "url": _link(base, kept, max(0, query.offset - query.count))})
    return {
        "resourceType": "Bundle",
        "type": "history",
        "total": page.total,
        "link": links,
        "entry": [_entry(ctx, stored) for stored in page.entries],
    }


def _link(base: str, params: list[tuple[str, str]], offset: int) -> str:
    query = urlencode([*params, ("_offset", str(offset))] if offset else params)
    return f"{base}?{query}" if query else base


def _entry(ctx: RequestContext, stored: StoredResource) -> dict[str, object]:
    url = f"{stored.resource_type}/{stored.id}"
    entry: dict[str, object] = {"fullUrl": f"{ctx.base_url}/{url}"}
    if not stored.deleted:
        entry["resource"] = orjson.Fragment(stored.body)
    method = stored.method if stored.method in ("POST", "PUT", "DELETE", "PATCH") else "PUT"
    entry["request"] = {"method": method, "url": url if method != "POST" else stored.resource_type}
    entry["response"] = {
        "status": {"POST": "201 Created", "DELETE": "204 No Content"}.get(method, "200 OK"),
        "etag": f'W/"{stored.version_id}"',
        "lastModified": format_instant(stored.last_updated),
    }
    return entry
