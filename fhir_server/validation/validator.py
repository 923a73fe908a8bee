"""Validate one FHIR R4 resource before it is stored. https://hl7.org/fhir/R4/validation.html

Not a resource at all (not a JSON object, no or unknown resourceType, type or id not matching the
URL) -> BadRequest (400). An R4 type the R4B models lack -> NotSupported. Anything else wrong ->
Unprocessable (422) carrying every issue found, each with an `expression` naming the element.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from fhir_server import jsonio
from fhir_server.errors import BadRequest, FhirError, Issue, NotSupported, Unprocessable
from fhir_server.validation.model import has_model, model_issues
from fhir_server.validation.schema import load_schema
from fhir_server.validation.structure import R4B_INCOMPATIBLE, StructureWalker, unsupported_message


@cache
def supported_types() -> frozenset[str]:
    """The R4 resource types this server accepts: those the R4B models can parse."""
    return frozenset(t for t in load_schema().resources if has_model(t) and t not in R4B_INCOMPATIBLE)


def validate_json_bytes(body: bytes, **expected: Any) -> dict[str, Any]:
    """Parse a request body and validate it; returns the parsed resource."""
    if jsonio.json_depth(body) > jsonio.MAX_DEPTH:
        raise BadRequest(f"The body is refused: {jsonio.TooDeep(jsonio.MAX_DEPTH)}")
    try:
        resource = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None
    validate_resource(resource, **expected)
    return resource  # type: ignore[no-any-return]


def validate_resource(
    resource: dict[str, Any],
    *,
    expected_type: str | None = None,
    expected_id: str | None = None,
    require_id: bool = False,
    use_model: bool = True,
) -> None:
    """Raise BadRequest / NotSupported / Unprocessable unless `resource` is a valid R4 resource.

    `use_model=False` skips the R4B model parse, which costs ~7x the rest: our own walk already checks
    shape, types, cardinality, choices, formats and bindings, so bulk loads of trusted data may skip it.
    """
    resource_type = _check_envelope(resource, expected_type, expected_id, require_id)
    walker = StructureWalker(supported_types())
    walker.resource(resource, resource_type, resource_type)
    issues = walker.issues
    if use_model:
        issues = _merge(issues, model_issues(resource, resource_type))
    if issues:
        count = f"{len(issues)} issue{'s' if len(issues) > 1 else ''}"
        raise Unprocessable(f"{resource_type} is not valid ({count}): {issues[0].diagnostics}", issues)


def _check_envelope(
    resource: Any, expected_type: str | None, expected_id: str | None, require_id: bool
) -> str:
    """The checks that decide whether the body is a resource of the right type and id at all."""
    if not isinstance(resource, dict):
        raise BadRequest("The body must be a JSON object holding a FHIR resource")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise _error(BadRequest, "The body has no resourceType: it is not a FHIR resource", "resourceType")
    if expected_type is not None and resource_type != expected_type:
        raise _error(
            BadRequest, f"The body is a {resource_type} but the URL is for {expected_type}", "resourceType"
        )
    if resource_type not in supported_types():
        if resource_type in load_schema().resources:
            raise _error(NotSupported, unsupported_message(resource_type), "resourceType")
        raise _error(BadRequest, f"Unknown resourceType {resource_type!r}", "resourceType")
    _check_id(resource, resource_type, expected_id, require_id)
    return resource_type


def _check_id(
    resource: dict[str, Any], resource_type: str, expected_id: str | None, require_id: bool
) -> None:
    """On update the body's id must be present and equal the URL's (https://hl7.org/fhir/R4/http.html#update)."""
    body_id = resource.get("id")
    where = f"{resource_type}.id"
    if (require_id or expected_id is not None) and body_id is None:
        raise _error(BadRequest, f"{where}: the resource must carry an id", where)
    if expected_id is not None and body_id != expected_id:
        message = f"{where}: the body's id {body_id!r} does not match the id in the URL {expected_id!r}"
        raise _error(BadRequest, message, where)


def _error(kind: type[FhirError], message: str, where: str) -> FhirError:
    """A 400/501 whose single issue points at `where` (the error family types only `message`)."""
    code = "not-supported" if kind is NotSupported else "invalid"
    return kind(message, [Issue(message, code=code, expression=(where,))])


def _merge(own: list[Issue], from_model: list[Issue]) -> list[Issue]:
    """Our issues first; a model issue at (or above) an element we already reported adds nothing,
    nor does one without an element below the root once we have said what is wrong."""
    if own:  # root-level model errors (two choices at once, ...) are ones our walk names precisely
        from_model = [i for i in from_model if i.expression and "." in i.expression[0]]
    seen = {e for issue in own for e in issue.expression}
    covered = seen | {_ancestor for e in seen for _ancestor in _ancestors(e)}
    return own + [i for i in from_model if not (set(i.expression) & covered)]


def _ancestors(path: str) -> list[str]:
    """'Patient.name[0].given' -> ['Patient.name[0]', 'Patient.name'] (not the root: root-level
    model errors such as two choices given at once are distinct problems)."""
    result: list[str] = []
    while True:
        cut = max(path.rfind("."), path.rfind("["))
        if cut <= 0 or "." not in path[:cut]:
            return result
        path = path[:cut]
        result.append(path)
