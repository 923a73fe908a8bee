"""FHIR search, compartment search and Patient $everything.

https://hl7.org/fhir/R4/http.html#search · https://hl7.org/fhir/R4/search.html
· https://hl7.org/fhir/R4/compartmentdefinition.html · https://hl7.org/fhir/R4/patient-operation-everything.html

The caller's access (`ctx.access`) travels inside the `SearchQuery`, so storage narrows matches,
totals, paging, includes and chains before anything is counted or returned.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson

from fhir_server.errors import BadRequest
from fhir_server.rest.common import require_id, require_live
from fhir_server.rest.context import RequestContext
from fhir_server.search.bundle import Links, searchset
from fhir_server.search.parse import ParsedSearch, ValueSetCodes, parse_search, value_set_urls
from fhir_server.search.query import AccessFilter, Clause, SearchQuery, UriValue
from fhir_server.search.valuesets import pick_value_set, value_set_codes

Params = Sequence[tuple[str, str]]
_MAX_VERSIONS = 1000  # versions of one value set considered when picking the latest
_LITERAL_VALUE_SET = re.compile(r"ValueSet/([A-Za-z0-9\-.]{1,64})")
_EVERYTHING = {"_since", "_type", "_count", "_offset", "_cursor", "_format", "_pretty"}


async def search_bundle(
    ctx: RequestContext,
    resource_type: str | None,
    params: Params,
    *,
    compartment: str | None = None,
) -> bytes:
    """A searchset Bundle for `GET [base]/[type]?params` (type None: system level; with
    `compartment="Patient/1"`: `GET [base]/Patient/1/[type]`)."""
    value_sets = await _value_sets(ctx, params)
    parsed = parse_search(
        resource_type, params, strict=ctx.strict, base_url=ctx.base_url, value_sets=value_sets
    )
    path = _path(resource_type, compartment)
    return await _run(ctx, parsed, path, compartment)


async def criteria_query(ctx: RequestContext, resource_type: str, params: Params, limit: int) -> SearchQuery:
    """The search behind a conditional create/update/delete: up to `limit` current resources matching
    the criteria alone, within what the caller may see.

    Always strict: silently ignoring a criterion here could update or delete the wrong resources.
    """
    criteria = criteria_only(params)
    value_sets = await _value_sets(ctx, criteria)
    parsed = parse_search(resource_type, criteria, strict=True, base_url=ctx.base_url, value_sets=value_sets)
    # Strict, a search ignores only empty values (`name=`, `name= `: blank folds to nothing and would
    # match all); a criterion that decides what to change must say something.
    if parsed.ignored:
        raise BadRequest(f"Conditional criteria may not be empty: '{parsed.ignored[0].name}=' has no value")
    if not parsed.query.criteria:
        names = ", ".join(dict.fromkeys(k for k, _ in criteria)) or "none"
        raise BadRequest(
            f"Conditional criteria must include a search parameter that selects {resource_type} "
            f"resources (got {names}): without one they would match every {resource_type}"
        )
    query = replace(parsed.query, count=limit, offset=0, total="none", sort=(), includes=(), revincludes=())
    return replace(query, access=access_filter(ctx), after=None)


async def everything(ctx: RequestContext, patient_id: str, params: Params) -> bytes:
    """`Patient/[id]/$everything`: the Patient and every resource in its compartment.

    Supports `_since` (last updated at or after), `_type`, `_count` and `_offset`.
    """
    require_id(patient_id)
    require_live(await ctx.store.read("Patient", patient_id), "Patient", patient_id)
    search_params = _everything_params(params, strict=ctx.strict)
    parsed = parse_search(None, search_params, strict=ctx.strict, base_url=ctx.base_url)
    compartment = f"Patient/{patient_id}"
    return await _run(ctx, parsed, f"{compartment}/$everything", compartment)


async def _run(ctx: RequestContext, parsed: ParsedSearch, path: str, compartment: str | None) -> bytes:
    query: SearchQuery = replace(parsed.query, compartment=compartment, access=access_filter(ctx))
    page = await ctx.store.search(query)
    used = tuple((k, v) for k, v in parsed.used if k not in ("_count", "_offset", "_cursor"))
    count_given = any(k == "_count" for k, _ in parsed.used)
    cursor = next((v for k, v in parsed.used if k == "_cursor"), None)
    links = Links(ctx.base_url, path, used, query.count, query.offset, count_given, cursor)
    return searchset(page, links, summary=parsed.summary, elements=parsed.elements, ignored=parsed.ignored)


async def _value_sets(ctx: RequestContext, params: Params) -> dict[str, ValueSetCodes]:
    """Expand the value sets `:in` / `:not-in` name, from the ValueSets stored here.

    Terminology is not patient data, so this lookup is not access-narrowed; it only feeds codes to
    the query, which itself is narrowed.
    """
    found: dict[str, ValueSetCodes] = {}
    for ref in value_set_urls(params):
        value_set = await _value_set(ctx, ref)
        codes = value_set_codes(value_set) if value_set is not None else None
        if codes is not None:
            found[ref] = codes
    return found


async def _value_set(ctx: RequestContext, ref: str) -> Mapping[str, Any] | None:
    """The ValueSet `ref` names (search.html#modifiers: "literal ... or logical"): by canonical url,
    with `|version` the one of that version, else the latest (valuesets.pick_value_set); failing
    that, a literal reference `ValueSet/[id]` or `[our base]/ValueSet/[id]`."""
    url, _, version = ref.partition("|")
    if "://" in url or url.startswith("urn:"):
        criterion = Clause("url", "uri", (UriValue(url),))
        query = SearchQuery(("ValueSet",), (criterion,), count=_MAX_VERSIONS, total="none")
        page = await ctx.store.search(query)
        picked = pick_value_set([orjson.loads(m.body) for m in page.matches], version or None)
        if picked is not None:
            return picked
    own = ctx.base_url.rstrip("/") + "/"
    local = _LITERAL_VALUE_SET.fullmatch(ref[len(own) :] if ref.startswith(own) else ref)
    stored = await ctx.store.read("ValueSet", local.group(1)) if local else None
    return orjson.loads(stored.body) if stored is not None and not stored.deleted else None


def access_filter(ctx: RequestContext) -> AccessFilter | None:
    """The caller's narrowing, None when nothing is narrowed (a backend client with `system/*.rs`
    gets an AccessFilter with every field open: searched as unrestricted, it keeps what the stores
    give only when no access applies, such as unasked totals). Fails closed: an access object we
    cannot read is an error, not "all"."""
    access = ctx.access
    if access is None or isinstance(access, AccessFilter):
        return _narrowing(access)
    narrowed = getattr(access, "search_filter", None)
    if narrowed is None or isinstance(narrowed, AccessFilter):
        return _narrowing(narrowed)
    raise TypeError(f"cannot narrow a search with access context {type(access).__name__}")


def _narrowing(access: AccessFilter | None) -> AccessFilter | None:
    return None if access == _OPEN else access


_OPEN = AccessFilter()  # every field open: no narrowing


def _path(resource_type: str | None, compartment: str | None) -> str:
    if compartment is None:
        return resource_type or ""
    return f"{compartment}/{resource_type or '*'}"


def criteria_only(params: Params) -> list[tuple[str, str]]:
    """Conditional criteria never page, sort or include."""
    return [(k, v) for k, v in params if k.split(":", 1)[0] not in ("_format", "_pretty")]


def _everything_params(params: Params, *, strict: bool) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in params:
        if name not in _EVERYTHING:
            if strict:
                raise BadRequest(
                    f"'{name}' is not a $everything parameter; use _since, _type, _count or _offset"
                )
            continue
        out.append(("_lastUpdated", f"ge{value}") if name == "_since" else (name, value))
    return out
