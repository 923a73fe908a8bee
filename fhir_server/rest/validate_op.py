"""The $validate operation: check a resource, store nothing. https://hl7.org/fhir/R4/resource-operation-validate.html"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import BadRequest, Issue, Unprocessable
from fhir_server.rest.common import require_type
from fhir_server.rest.outcome import outcome_bytes
from fhir_server.rest.result import Result
from fhir_server.validation import validate_resource


def validate_operation(resource_type: str, body: dict[str, Any], id: str | None) -> Result:
    """Answer 200 with an OperationOutcome either way: the outcome, not the status, says if it is valid."""
    require_type(resource_type)
    resource = _unwrap(body)
    try:
        validate_resource(resource, expected_type=resource_type, expected_id=id)
    except Unprocessable as error:
        return Result(200, body=outcome_bytes(error.issues))
    ok = Issue("The resource is valid", code="informational", severity="information")
    return Result(200, body=outcome_bytes([ok]))


def _unwrap(body: dict[str, Any]) -> dict[str, Any]:
    """$validate takes the resource itself or a Parameters with a `resource` parameter."""
    if body.get("resourceType") != "Parameters":
        return body
    for parameter in body.get("parameter") or []:
        if isinstance(parameter, dict) and parameter.get("name") == "resource":
            inner = parameter.get("resource")
            if isinstance(inner, dict):
                return inner
    raise BadRequest(
        "The Parameters body has no 'resource' parameter to validate", expression="Parameters.parameter"
    )
