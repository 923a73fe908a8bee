"""Parse with the fhir.resources R4B models and turn what they reject into Issues.

The models check cardinality, choice-type exclusivity and primitive formats (dates, uris, decimals).
Their pydantic errors become Issues with FHIRPath-like expressions; no Python trace ever leaks.
"""

from __future__ import annotations

from typing import Any

import pydantic
from fhir.resources.R4B import fhirtypes, get_fhir_model_class

from fhir_server.errors import Issue

# pydantic error type -> OperationOutcome issue code (http://hl7.org/fhir/issue-type)
_CODES = {
    "missing": "required",
    "model_field_validation.missing": "required",
    "extra_forbidden": "not-supported",
}


def has_model(resource_type: str) -> bool:
    """Whether the R4B models define this type (looked up without importing the model module)."""
    return hasattr(fhirtypes, resource_type + "Type")


def expression(resource_type: str, loc: tuple[int | str, ...]) -> str:
    """('name', 0, 'given', 1) -> 'Patient.name[0].given[1]'."""
    parts = [resource_type]
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append("." + ("resourceType" if part == "resource_type" else part))
    return "".join(parts)


def _message(error: Any) -> str:
    kind = error["type"]
    if kind in ("missing", "model_field_validation.missing"):
        return "required element is missing"
    if kind == "extra_forbidden":
        # Our R4 walk reports elements R4 does not define first, and its issue wins the merge; what
        # is left are R4 elements the R4B model lacks (e.g. EvidenceVariable.approvalDate).
        return f"element {error['loc'][-1]!r} is not supported by this server (its R4B model lacks it)"
    text = str(error["msg"]).removeprefix("Value error, ").strip()
    value = error.get("input")
    if isinstance(value, str | int | float | bool) and kind != "value_error":
        text += f" (got {value!r})"
    return text


def model_issues(resource: dict[str, Any], resource_type: str) -> list[Issue]:
    """Every error the R4B model finds in `resource`, or [] when it parses."""
    try:
        get_fhir_model_class(resource_type).model_validate(resource)
    except pydantic.ValidationError as exc:
        return [_issue(resource_type, error) for error in exc.errors(include_url=False)]
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        # fhir_core raises bare KeyErrors for e.g. contained resources of unknown types
        return [Issue(f"{resource_type}: the resource could not be parsed ({type(exc).__name__}: {exc})")]
    return []


def _issue(resource_type: str, error: Any) -> Issue:
    path = expression(resource_type, tuple(error["loc"]))
    return Issue(f"{path}: {_message(error)}", code=_CODES.get(error["type"], "value"), expression=(path,))
