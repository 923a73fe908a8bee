"""OperationOutcome bodies: the one place errors become FHIR. https://hl7.org/fhir/R4/operationoutcome.html"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from fhir_server.errors import Issue


def outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [_issue(i) for i in issues]}


def outcome_bytes(issues: Iterable[Issue]) -> bytes:
    return orjson.dumps(outcome(issues))


def _issue(issue: Issue) -> dict[str, Any]:
    out: dict[str, Any] = {"severity": issue.severity, "code": issue.code, "diagnostics": issue.diagnostics}
    if issue.expression:
        out["expression"] = list(issue.expression)
    return out
