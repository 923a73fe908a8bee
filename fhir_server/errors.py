"""The typed error family. Raised anywhere; turned into an OperationOutcome only in the HTTP layer.

https://hl7.org/fhir/R4/operationoutcome.html — `issue.code` values come from
http://hl7.org/fhir/issue-type; each error class carries the HTTP status the spec asks for.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: what went wrong, and where (a FHIRPath expression) if known."""

    diagnostics: str
    code: str = "invalid"
    severity: str = "error"
    expression: tuple[str, ...] = ()


class FhirError(Exception):
    """Base of every error the server answers with an OperationOutcome.

    Subclasses fix `status` and the issue `code`; raise them with a message a person can act on and,
    where there is one, the FHIRPath `expression` of the offending element.
    """

    status: int = 400
    code: str = "invalid"

    def __init__(
        self,
        message: str,
        issues: list[Issue] | None = None,
        *,
        expression: tuple[str, ...] | str = (),
        headers: dict[str, str] | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        expr = (expression,) if isinstance(expression, str) else tuple(expression)
        self.issues = issues or [Issue(message, code=self.code, expression=expr)]
        self.headers = headers or {}

    def __str__(self) -> str:
        return self.message


# Client errors, one class per status the spec uses.
class BadRequest(FhirError):  # malformed request, unknown search parameter, bad syntax
    status, code = 400, "invalid"


class Unauthorized(FhirError):  # no token, expired, revoked, wrong audience
    status, code = 401, "login"


class Forbidden(FhirError):  # a valid token that does not allow this
    status, code = 403, "forbidden"


class NotFound(FhirError):  # unknown type, id or version
    status, code = 404, "not-found"


class MethodNotAllowed(FhirError):
    status, code = 405, "not-supported"


class NotAcceptable(FhirError):  # e.g. XML asked for
    status, code = 406, "not-supported"


class Conflict(FhirError):  # version conflict without If-Match, id clash
    status, code = 409, "conflict"


class Gone(FhirError):  # read of a deleted resource
    status, code = 410, "deleted"


class PreconditionFailed(FhirError):  # If-Match mismatch, conditional with many matches
    status, code = 412, "conflict"


class UnsupportedMediaType(FhirError):
    status, code = 415, "not-supported"


class Unprocessable(FhirError):  # resource fails validation
    status, code = 422, "processing"


class TooManyRequests(FhirError):
    status, code = 429, "throttled"


class NotSupported(FhirError):
    status, code = 501, "not-supported"


class VersionConflict(Exception):
    """Raised by a storage adapter when the current version is not the one the writer expected."""

    def __init__(self, resource_type: str, resource_id: str, expected: int, actual: int) -> None:
        super().__init__(f"{resource_type}/{resource_id}: expected version {expected}, found {actual}")
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.expected = expected
        self.actual = actual


class ConditionConflict(VersionConflict):
    """Raised by a storage adapter when a conditional create's criteria match something by the time
    the write commits (a racing request created it first). Handled like any lost race: plan again."""

    def __init__(self, resource_type: str, resource_id: str, expected: int) -> None:
        super().__init__(resource_type, resource_id, expected, expected)
        self.args = (f"{resource_type}: its conditional criteria matched a resource written meanwhile",)
