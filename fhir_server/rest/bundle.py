"""FHIR batch and transaction. https://hl7.org/fhir/R4/http.html#transaction

A transaction is all or nothing: every entry is planned first (ids assigned, `urn:uuid:`
references rewritten, conditions resolved, resources validated), then every write goes to the
store as ONE atomic write. Entries are processed in the spec's order — DELETE, POST, PUT/PATCH,
then GET — and answered in the order they were sent. A batch runs each entry on its own and
reports each entry's outcome.
"""

from __future__ import annotations

import base64
import copy
import logging
import re
from collections.abc import Awaitable, Callable, KeysView
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from fhir_server.errors import BadRequest, FhirError, Issue, PreconditionFailed, VersionConflict
from fhir_server.rest.commit import commit
from fhir_server.rest.common import parse_json, require_type
from fhir_server.rest.context import RequestContext
from fhir_server.rest.create import plan_create
from fhir_server.rest.delete import plan_conditional_delete, plan_delete
from fhir_server.rest.outcome import outcome_bytes
from fhir_server.rest.patch import plan_patch
from fhir_server.rest.planned import Planned, guarded, match_criteria, match_criteria_guarded
from fhir_server.rest.planning import Item, PlanError
from fhir_server.rest.result import Result
from fhir_server.rest.update import plan_conditional_update, plan_update
from fhir_server.rest.writes import format_instant, new_id, parse_etag, utc_now, version_conflict_error
from fhir_server.storage.port import StoredResource

Json = dict[str, Any]
log = logging.getLogger(__name__)
PARALLEL_FROM = 32  # creations in one transaction worth sending to worker processes
_CONDITIONAL_REF = re.compile(r"[A-Z][A-Za-z]+\?.+")
# The spec's processing order for a transaction; GET runs after the writes are committed.
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}

# A GET entry is run by the same dispatcher as a GET request to the server (wired by the HTTP layer).
GetRunner = Callable[[RequestContext, str, list[tuple[str, str]]], Awaitable[Result]]


@dataclass
class Entry:
    index: int
    method: str
    path: str  # "Patient", "Patient/1", "Patient/1/_history/2"
    query: str  # the part after "?", "" if none
    full_url: str | None
    resource: Json | None
    if_match: int | None = None
    if_none_exist: str | None = None
    assigned_id: str | None = None  # POST: the id chosen before planning (so references resolve)
    planned: Planned | None = None
    result: Result | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def resource_type(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def label(self) -> str:
        return (
            f"Bundle.entry[{self.index}] ({self.method} {self.path}{'?' + self.query if self.query else ''})"
        )


async def process_bundle(
    ctx: RequestContext, bundle: Json, run_get: GetRunner, *, owned: bool = False
) -> Result:
    """`owned`: the caller hands the Bundle over (the HTTP route's own parse of the request), so
    references are rewritten in its resources as they are. Otherwise its entries are copied first:
    an in-process caller may send the same Bundle again, and it must find it as it was."""
    if bundle.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base URL takes a Bundle of type batch or transaction")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise BadRequest(
            f"Bundle.type '{kind}' cannot be processed; send type 'batch' or 'transaction'",
            expression="Bundle.type",
        )
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise BadRequest("Bundle.entry must be an array", expression="Bundle.entry")
    if not owned:
        raw_entries = copy.deepcopy(raw_entries)
    if kind == "transaction":
        entries = [_parse_entry(i, raw, ctx.base_url) for i, raw in enumerate(raw_entries)]
        return await _transaction(ctx, entries, run_get)
    return await _batch(ctx, raw_entries, run_get)


# -- parsing ---------------------------------------------------------------------------------------


def _parse_entry(index: int, raw: Any, base_url: str) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} must be an object", expression=where)
    request = raw.get("request")
    if not isinstance(request, dict):
        raise BadRequest(f"{where} has no request (method and url)", expression=f"{where}.request")
    method, url = request.get("method"), request.get("url")
    if method not in _ORDER:
        raise BadRequest(
            f"{where}.request.method '{method}' is not one of GET, HEAD, POST, PUT, PATCH, DELETE",
            expression=f"{where}.request.method",
        )
    if not isinstance(url, str) or not url.strip():
        raise BadRequest(f"{where}.request.url is missing", expression=f"{where}.request.url")
    path, query = _split_url(url, base_url)
    resource = raw.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise BadRequest(f"{where}.resource must be a resource object", expression=f"{where}.resource")
    if method in ("POST", "PUT", "PATCH") and resource is None:
        raise BadRequest(f"{where}: {method} needs a resource", expression=f"{where}.resource")
    return Entry(
        index=index,
        method=method,
        path=path,
        query=query,
        full_url=raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None,
        resource=resource,
        if_match=_entry_if_match(request.get("ifMatch"), where),
        if_none_exist=_entry_if_none_exist(request.get("ifNoneExist"), where),
    )


def _entry_if_match(value: Any, where: str) -> int | None:
    """request.ifMatch as the If-Match header is read: a version ETag, or a 400 (never ignored)."""
    if value is None:
        return None
    version = parse_etag(value) if isinstance(value, str) else None
    if version is None:
        raise BadRequest(
            f"{where}.request.ifMatch {value!r} is not a version ETag such as 'W/\"3\"'",
            expression=f"{where}.request.ifMatch",
        )
    return version


def _entry_if_none_exist(value: Any, where: str) -> str | None:
    """request.ifNoneExist: search criteria, which an empty or non-string value is not (a 400 rather
    than a create that was meant to be conditional)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(
            f"{where}.request.ifNoneExist {value!r} is not search criteria such as 'identifier=x|1'",
            expression=f"{where}.request.ifNoneExist",
        )
    return value


def _split_url(url: str, base_url: str) -> tuple[str, str]:
    """An entry's request.url relative to this server: ("Patient/1", "name=x")."""
    text = url.strip()
    if text.startswith(base_url + "/"):
        text = text[len(base_url) + 1 :]
    elif "://" in text:
        raise BadRequest(f"request.url '{url}' is not on this server ({base_url})")
    parts = urlsplit(text)
    return parts.path.strip("/"), parts.query


# -- transaction -------------------------------------------------------------------------------------


async def _transaction(ctx: RequestContext, entries: list[Entry], run_get: GetRunner) -> Result:
    now = utc_now()
    await _assign_identities(ctx, entries)
    _rewrite_references(entries)
    for entry in entries:
        await _within(entry, _resolve_conditional_references(ctx, entry))
    await _prepare_creations(ctx, entries, now)
    ordered = sorted(entries, key=lambda e: (_ORDER[e.method], e.index))
    for entry in ordered:
        if entry.method not in ("GET", "HEAD"):
            planned = await _within(entry, _plan(ctx, entry, now))
            entry.planned = guarded(planned, entry.extra.get("unless_match"))
    _refuse_overlaps(entries)
    ops = [e.planned.op for e in ordered if e.planned and e.planned.op]
    try:
        stored = await ctx.store.write(ops)
    except VersionConflict as error:
        any_if_match = any(e.planned and e.planned.if_match for e in entries)
        raise version_conflict_error(error, if_match=any_if_match) from None
    by_key = {(s.resource_type, s.id): s for s in stored}
    for entry in ordered:
        if entry.planned is not None:
            entry.result = _written(entry.planned, by_key)
        else:
            entry.result = await _read_entry(ctx, entry, run_get)
    return _response_bundle(ctx, "transaction-response", [e.result for e in entries if e.result])


async def _assign_identities(ctx: RequestContext, entries: list[Entry]) -> None:
    """Give every entry its final Type/id before planning, so `urn:uuid:` references can point at it."""
    for entry in entries:
        if entry.method == "POST":
            if entry.if_none_exist:
                match, entry.extra["unless_match"] = await _within(
                    entry,
                    match_criteria_guarded(ctx, entry.resource_type, entry.if_none_exist, "ifNoneExist"),
                )
                if match is not None:
                    entry.extra["existing"] = match
                    entry.extra["target"] = f"{match.resource_type}/{match.id}"
                    continue
            entry.assigned_id = new_id()
            entry.extra["target"] = f"{entry.resource_type}/{entry.assigned_id}"
        elif entry.method == "PUT" and entry.query:
            match, unless_match = await _within(
                entry, match_criteria_guarded(ctx, entry.resource_type, entry.query, "Conditional update")
            )
            if match is None:
                entry.extra["unless_match"] = unless_match
            body_id = (entry.resource or {}).get("id")
            if match and body_id is not None and body_id != match.id:
                raise BadRequest(
                    f"{entry.label}: the body's id '{body_id}' differs from "
                    f"{entry.resource_type}/{match.id}, "
                    "which the criteria match",
                    expression=f"Bundle.entry[{entry.index}].resource.id",
                )
            target_id = match.id if match else (body_id if isinstance(body_id, str) else new_id())
            entry.extra["server_id"] = match is None and not isinstance(body_id, str)
            entry.assigned_id = target_id
            entry.extra["target"] = f"{entry.resource_type}/{target_id}"
        elif entry.method in ("PUT", "PATCH", "DELETE") and "/" in entry.path:
            entry.extra["target"] = "/".join(entry.path.split("/")[:2])


def _rewrite_references(entries: list[Entry]) -> None:
    """Replace references to entries' fullUrls (urn:uuid:..., urn:oid:...) with their final Type/id."""
    _refuse_unresolved(entries, _unique_full_urls(entries))
    mapping = {e.full_url: e.extra["target"] for e in entries if e.full_url and "target" in e.extra}
    if not mapping:
        return
    for entry in entries:
        if entry.resource is not None and not _references_of(entry).isdisjoint(mapping):
            _replace_refs(_reference_holders(entry), mapping)


def _unique_full_urls(entries: list[Entry]) -> set[str]:
    """Every entry's fullUrl, each only once (bundle-7): a reference to a repeated one would
    silently point at one of them."""
    first: dict[str, Entry] = {}
    for entry in entries:
        if entry.full_url is None:
            continue
        if entry.full_url in first:
            raise BadRequest(
                f"{entry.label} has the fullUrl '{entry.full_url}' of {first[entry.full_url].label}; "
                "each entry needs its own (Bundle invariant bundle-7)",
                expression=f"Bundle.entry[{entry.index}].fullUrl",
            )
        first[entry.full_url] = entry
    return set(first)


def _refuse_unresolved(entries: list[Entry], full_urls: set[str]) -> None:
    """A urn:uuid: reference names an entry of this Bundle (bundle.html#references); one that names
    none would be stored pointing nowhere, so the transaction is refused instead."""
    for entry in entries:
        if entry.resource is None or entry.resource.get("resourceType") == "Bundle":
            continue  # a Bundle's own urn:uuid references name its own entries (a document, say)
        unresolved = sorted(r for r in _references_of(entry) - full_urls if r.startswith("urn:uuid:"))
        if unresolved:
            raise BadRequest(
                f"{entry.label} refers to {', '.join(unresolved)}, which is the fullUrl of no entry "
                "in this transaction",
                expression=f"Bundle.entry[{entry.index}].resource",
            )


def _references_of(entry: Entry) -> KeysView[str]:
    """Every Reference.reference string in the entry's resource."""
    return _reference_holders(entry).keys()


def _reference_holders(entry: Entry) -> dict[str, list[dict[str, Any]]]:
    """Each Reference.reference string in the entry's resource, with the objects that hold it (one
    walk, remembered, and kept true by _replace_refs)."""
    if "references" not in entry.extra:
        entry.extra["references"] = _references(entry.resource) if entry.resource is not None else {}
    found: dict[str, list[dict[str, Any]]] = entry.extra["references"]
    return found


async def _resolve_conditional_references(ctx: RequestContext, entry: Entry) -> None:
    """A reference `Patient?identifier=...` means the one Patient those criteria match (http.html#trules)."""
    if entry.resource is None:
        return
    mapping: dict[str, str] = {}
    # urn:uuid rewriting never makes a conditional reference, so the remembered set still holds them.
    for ref in sorted(r for r in _references_of(entry) if _CONDITIONAL_REF.fullmatch(r)):
        resource_type, criteria = ref.split("?", 1)
        require_type(resource_type)
        match = await match_criteria(ctx, resource_type, criteria, "Conditional reference")
        if match is None:
            raise PreconditionFailed(f"The conditional reference '{ref}' matches no {resource_type}")
        mapping[ref] = f"{resource_type}/{match.id}"
    if mapping:
        _replace_refs(_reference_holders(entry), mapping)


def _references(
    node: Any, found: dict[str, list[dict[str, Any]]] | None = None
) -> dict[str, list[dict[str, Any]]]:
    found = {} if found is None else found
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            found.setdefault(ref, []).append(node)
        for value in node.values():
            if isinstance(value, dict | list):
                _references(value, found)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                _references(item, found)
    return found


def _replace_refs(holders: dict[str, list[dict[str, Any]]], mapping: dict[str, str]) -> None:
    """Point the references named in `mapping` at their targets, in place (`holders`: _references
    of a resource that is this request's own parse; copying every object of it to change a few
    cost ~1 ms a 50-entry transaction), and keep `holders` true."""
    moved = [(holders.pop(ref), target) for ref, target in mapping.items() if ref in holders]
    for nodes, target in moved:  # all taken out first: a target that is also a key is not mapped again
        for node in nodes:
            node["reference"] = target
        holders.setdefault(target, []).extend(nodes)


async def _prepare_creations(ctx: RequestContext, entries: list[Entry], now: datetime) -> None:
    """Validate and index a large transaction's new resources in worker processes, all at once."""
    creations = [e for e in entries if e.method == "POST" and e.assigned_id and e.resource is not None]
    if ctx.planner is None or len(creations) < PARALLEL_FROM:
        return
    items: list[Item] = [
        ({**(e.resource or {}), "id": e.assigned_id}, str(e.assigned_id), 0) for e in creations
    ]
    try:
        results = await ctx.planner.plan(items, now, ctx.base_url)
    except Exception as error:  # no worker processes to be had: plan them here, as for small ones
        log.warning(
            "worker processes unavailable (%s); planning the transaction in-process", type(error).__name__
        )
        return
    for entry, planned in zip(creations, results, strict=True):
        entry.extra["prepared"] = planned


def _refuse_overlaps(entries: list[Entry]) -> None:
    """The spec: a transaction SHALL fail if two entries change the same resource."""
    seen: dict[tuple[str, str], Entry] = {}
    for entry in entries:
        op = entry.planned.op if entry.planned else None
        if op is None:
            continue
        key = (op.resource_type, op.id)
        if key in seen:
            raise BadRequest(
                f"{entry.label} changes {key[0]}/{key[1]}, which {seen[key].label} changes too; "
                "a transaction may change each resource once",
                expression=f"Bundle.entry[{entry.index}]",
            )
        seen[key] = entry


async def _plan(ctx: RequestContext, entry: Entry, now: datetime) -> Planned:
    segments = entry.path.split("/") if entry.path else []
    resource = entry.resource or {}
    if entry.method == "POST":
        if len(segments) != 1:
            raise BadRequest(f"POST goes to a type, e.g. 'Patient', not '{entry.path}'")
        existing = entry.extra.get("existing")
        if isinstance(existing, StoredResource):
            return Planned(200, existing=existing, location=True)
        prepared = entry.extra.get("prepared")
        if isinstance(prepared, PlanError):
            raise prepared.error()
        # A transaction resolved ifNoneExist with the other entries' identities; a batch entry here.
        criteria = entry.if_none_exist if entry.assigned_id is None else None
        return await plan_create(
            ctx, segments[0], resource, now, id=entry.assigned_id, prepared=prepared, if_none_exist=criteria
        )
    if entry.method == "DELETE":
        if len(segments) == 1 and entry.query:
            return await plan_conditional_delete(ctx, segments[0], entry.query, now)
        _expect_instance(segments, entry)
        return await plan_delete(ctx, segments[0], segments[1], now, if_match=entry.if_match)
    if entry.method == "PUT":
        if len(segments) == 1 and entry.query:
            if entry.assigned_id is None:  # a batch entry: resolve the criteria now
                return await plan_conditional_update(
                    ctx, segments[0], entry.query, resource, now, if_match=entry.if_match
                )
            target = {**resource, "id": entry.assigned_id}  # resolved before references were rewritten
            return await plan_update(
                ctx,
                segments[0],
                entry.assigned_id,
                target,
                now,
                if_match=entry.if_match,
                server_id=entry.extra["server_id"] is True,
            )
        _expect_instance(segments, entry)
        return await plan_update(ctx, segments[0], segments[1], resource, now, if_match=entry.if_match)
    _expect_instance(segments, entry)
    return await plan_patch(
        ctx, segments[0], segments[1], _patch_operations(resource), now, if_match=entry.if_match
    )


def _expect_instance(segments: list[str], entry: Entry) -> None:
    if len(segments) != 2:
        raise BadRequest(f"{entry.method} needs a url of the form 'Type/id', not '{entry.path}'")


def _patch_operations(resource: Json) -> Any:
    """In a Bundle a JSON Patch travels as a Binary with contentType application/json-patch+json."""
    if resource.get("resourceType") != "Binary" or "json-patch" not in str(resource.get("contentType")):
        raise BadRequest(
            "A PATCH entry needs a Binary resource with contentType application/json-patch+json "
            "(FHIRPath Patch is not supported)"
        )
    try:
        data = base64.b64decode(str(resource.get("data", "")), validate=True)
    except ValueError:
        raise BadRequest("The PATCH entry's Binary.data is not base64-encoded JSON Patch") from None
    return parse_json(data, "The PATCH entry's Binary.data")


def _written(planned: Planned, by_key: dict[tuple[str, str], StoredResource]) -> Result:
    if planned.op is None:
        return Result(planned.status, planned.existing, location=planned.location)
    stored = by_key[(planned.op.resource_type, planned.op.id)]
    return Result(planned.status, stored, location=planned.location)


async def _get(ctx: RequestContext, entry: Entry, run_get: GetRunner) -> Result:
    return await run_get(ctx, entry.path, parse_qsl(entry.query, keep_blank_values=True))


async def _read_entry(ctx: RequestContext, entry: Entry, run_get: GetRunner) -> Result:
    """A read changes nothing, so its failure is reported in its own entry, as in a batch."""
    try:
        return await _get(ctx, entry, run_get)
    except FhirError as error:
        return _error_result(error)


async def _within(entry: Entry, work: Awaitable[Any]) -> Any:
    """Run one entry's step; name the entry in any error it raises (status kept)."""
    try:
        return await work
    except FhirError as error:
        raise _in_entry(error, entry) from None


def _in_entry(error: FhirError, entry: Entry) -> FhirError:
    prefix = f"Bundle.entry[{entry.index}].resource"
    issues = [
        replace(issue, diagnostics=f"{entry.label}: {issue.diagnostics}", expression=_reroot(issue, prefix))
        for issue in error.issues
    ]
    return FhirError(
        f"{entry.label}: {error.message}", issues, headers=error.headers, status=error.status, code=error.code
    )


def _reroot(issue: Issue, prefix: str) -> tuple[str, ...]:
    """`Observation.status` inside entry 3 -> `Bundle.entry[3].resource.status`."""
    rerooted = []
    for expr in issue.expression:
        head, _, rest = expr.partition(".")
        rerooted.append(f"{prefix}.{rest}" if head[:1].isupper() and rest else expr)
    return tuple(rerooted)


# -- batch -----------------------------------------------------------------------------------------


async def _batch(ctx: RequestContext, raw_entries: list[Any], run_get: GetRunner) -> Result:
    results: list[Result] = []
    for index, raw in enumerate(raw_entries):
        try:
            entry = _parse_entry(index, raw, ctx.base_url)
            if entry.method in ("GET", "HEAD"):
                results.append(await _read_entry(ctx, entry, run_get))
            else:
                await _resolve_conditional_references(ctx, entry)
                results.append(await commit(ctx, _bind(ctx, entry)))
        except FhirError as error:
            results.append(_error_result(error))
    return _response_bundle(ctx, "batch-response", results)


def _bind(ctx: RequestContext, entry: Entry) -> Callable[[], Awaitable[Planned]]:
    if entry.method == "POST":
        entry.assigned_id = None  # batch entries do not reference each other: a fresh id each try

    async def plan() -> Planned:
        return await _plan(ctx, entry, utc_now())

    return plan


def _error_result(error: FhirError) -> Result:
    return Result(error.status, body=outcome_bytes(error.issues), issues=tuple(error.issues))


# -- the response ------------------------------------------------------------------------------------


def _response_bundle(ctx: RequestContext, kind: str, results: list[Result]) -> Result:
    body = {"resourceType": "Bundle", "type": kind, "entry": [_response_entry(ctx, r) for r in results]}
    return Result(200, body=orjson.dumps(body))


def _response_entry(ctx: RequestContext, result: Result) -> dict[str, Any]:
    response: dict[str, Any] = {"status": _STATUS_TEXT.get(result.status, str(result.status))}
    entry: dict[str, Any] = {}
    stored = result.stored
    if stored is not None:
        url = f"{stored.resource_type}/{stored.id}"
        entry["fullUrl"] = f"{ctx.base_url}/{url}"
        if not stored.deleted and result.status != 204:
            entry["resource"] = orjson.Fragment(stored.body)
        if result.location:
            response["location"] = f"{url}/_history/{stored.version_id}"
        response["etag"] = f'W/"{stored.version_id}"'
        response["lastModified"] = format_instant(stored.last_updated)
    elif result.body is not None and result.status < 300:
        entry["resource"] = orjson.Fragment(result.body)
    elif result.body is not None:
        response["outcome"] = orjson.Fragment(result.body)
    entry["response"] = response
    return entry
