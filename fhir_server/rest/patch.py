"""FHIR patch with JSON Patch (RFC 6902). https://hl7.org/fhir/R4/http.html#patch"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import jsonpatch
import jsonpointer

from fhir_server import jsonio
from fhir_server.access import guard
from fhir_server.errors import BadRequest, Unprocessable
from fhir_server.rest.common import require_id, require_live, require_type
from fhir_server.rest.context import RequestContext
from fhir_server.rest.planned import Planned
from fhir_server.rest.update import check_if_match
from fhir_server.rest.writes import decode, plan_put
from fhir_server.validation import validate_resource

# Elements the server owns: a patch may not change them.
MAX_OPERATIONS = 1000  # operations in one JSON Patch
_PROTECTED = ("/id", "/resourceType", "/meta/versionId", "/meta/lastUpdated")


def apply_json_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise BadRequest("A JSON Patch body must be an array of operations (RFC 6902)")
    for index, op in enumerate(operations):
        if not isinstance(op, dict):
            raise BadRequest(
                f"JSON Patch operation {index} must be an object such as "
                f'{{"op": "replace", "path": "/active", "value": true}}, not {_json_kind(op)}'
            )
        path = op.get("path", "")
        if isinstance(path, str) and op.get("op") != "test" and path.startswith(_PROTECTED):
            raise Unprocessable(f"Patch operation {index} may not change '{path}': the server owns it")
    if len(operations) > MAX_OPERATIONS:
        raise BadRequest(f"A JSON Patch may have at most {MAX_OPERATIONS} operations; send several")
    try:
        patched = _applied(resource, operations)
    except jsonpatch.JsonPatchTestFailed as error:
        raise Unprocessable(f"A JSON Patch 'test' operation failed: {error}") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as error:
        raise Unprocessable(f"The JSON Patch cannot be applied: {error}") from None
    except (TypeError, KeyError, AttributeError) as error:
        raise BadRequest(f"The JSON Patch is malformed: {error}") from None
    if not isinstance(patched, dict):
        raise Unprocessable("The JSON Patch replaced the whole resource with something that is not one")
    if jsonio.value_depth(patched) > jsonio.MAX_DEPTH:  # each value was bounded, not where it went
        raise Unprocessable(f"The patched resource is refused: {jsonio.TooDeep(jsonio.MAX_DEPTH)}")
    return patched


def _applied(resource: dict[str, Any], operations: list[dict[str, Any]]) -> Any:
    """The operations applied one at a time to a copy. `copy` is the one operation that can grow a
    resource beyond what the request carried (each can double it: 22 of them made 1.7 GB), so the
    result is measured after each, against its depth limit and a size the request explains."""
    document: Any = copy.deepcopy(resource)
    budget = 2 * (len(jsonio.dumps(resource)) + len(jsonio.dumps(operations))) + 65_536
    for index, op in enumerate(operations):
        document = jsonpatch.apply_patch(document, [op], in_place=True)
        if op.get("op") == "copy" and (
            jsonio.value_depth(document) > jsonio.MAX_DEPTH or len(jsonio.dumps(document)) > budget
        ):
            raise Unprocessable(
                f"JSON Patch operation {index} (copy) makes the resource deeper than "
                f"{jsonio.MAX_DEPTH} levels or larger than the request can explain ({budget} bytes)"
            )
    return document


def _json_kind(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return "null" if value is None else "a boolean"
    return "an array" if isinstance(value, list) else "a string" if isinstance(value, str) else "a number"


async def plan_patch(
    ctx: RequestContext,
    resource_type: str,
    id: str,
    operations: Any,
    now: datetime,
    *,
    if_match: int | None = None,
) -> Planned:
    require_type(resource_type)
    require_id(id)
    guard.require_scope(ctx, "patch", resource_type)
    found = await ctx.store.read(resource_type, id)
    if found is not None:
        await guard.require_readable(ctx, found)  # 404/410 only for what the caller may see
    current = require_live(found, resource_type, id)
    await guard.require_writable_existing(ctx, "patch", current)
    check_if_match(current, if_match, f"{resource_type}/{id}")
    patched = apply_json_patch(decode(current.body), operations)
    validate_resource(patched, expected_type=resource_type, expected_id=id, require_id=True)
    op = plan_put(patched, id, current.version_id, now, method="PATCH", own_base=ctx.base_url)
    await guard.require_writable_new(ctx, "patch", op)
    return Planned(200, op, if_match=if_match is not None)
