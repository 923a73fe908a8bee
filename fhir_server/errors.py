"""The typed error family. Raised anywhere; turned into an OperationOutcome only in the HTTP layer.

https://hl7.org/fhir/R4/operationoutcome.html — `issue.code` values come from
http://hl7.org/fhir/issue-type; each error class carries the HTTP status the spec asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: what went wrong, and where (a FHIRPath expression) if known."""

    diagnostics: str
    code: str = "invalid"
    severity: str = "error"
    expression: tuple[str, ...] = ()


@dataclass
class FhirError(Exception):
    """Base of every error the server answers with an OperationOutcome."""

    message: str
    issues: list[Issue] = field(default_factory=list)
    status: int = 400
    code: str = "invalid"
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)
        if not self.issues:
            self.issues = [Issue(self.message, code=self.code)]

    def __str__(self) -> str:
        return self.message


def _kind(status: int, code: str) -> type[FhirError]:
    """Make a FhirError subclass with a fixed status and issue code."""

    class Kind(FhirError):
        def __init__(
            self,
            message: str,
            issues: list[Issue] | None = None,
            *,
            expression: tuple[str, ...] | str = (),
            headers: dict[str, str] | None = None,
        ) -> None:
            expr = (expression,) if isinstance(expression, str) else tuple(expression)
            default = [Issue(message, code=code, expression=expr)]
            super().__init__(message, issues or default, status, code, headers or {})

    return Kind


# Client errors, one class per status the spec uses.
BadRequest = _kind(400, "invalid")  # malformed request, unknown search parameter, bad syntax
Unauthorized = _kind(401, "login")  # no token, expired, revoked, wrong audience
Forbidden = _kind(403, "forbidden")  # a valid token that does not allow this
NotFound = _kind(404, "not-found")  # unknown type, id or version
MethodNotAllowed = _kind(405, "not-supported")
NotAcceptable = _kind(406, "not-supported")  # e.g. XML asked for
Conflict = _kind(409, "conflict")  # version conflict without If-Match, id clash
Gone = _kind(410, "deleted")  # read of a deleted resource
PreconditionFailed = _kind(412, "conflict")  # If-Match mismatch, conditional with many matches
UnsupportedMediaType = _kind(415, "not-supported")
Unprocessable = _kind(422, "processing")  # resource fails validation
TooManyRequests = _kind(429, "throttled")
NotSupported = _kind(501, "not-supported")


class VersionConflict(Exception):
    """Raised by a storage adapter when the current version is not the one the writer expected."""

    def __init__(self, resource_type: str, resource_id: str, expected: int, actual: int) -> None:
        super().__init__(f"{resource_type}/{resource_id}: expected version {expected}, found {actual}")
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.expected = expected
        self.actual = actual
