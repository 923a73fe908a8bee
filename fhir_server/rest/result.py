"""What an interaction answers, before the HTTP layer turns it into headers and a body."""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.errors import Issue
from fhir_server.storage.port import StoredResource


@dataclass(frozen=True, slots=True)
class Result:
    status: int
    stored: StoredResource | None = None  # gives ETag, Last-Modified, Location and the default body
    body: bytes | None = None  # a body of its own (Bundle, CapabilityStatement, OperationOutcome)
    location: bool = False  # send Location (created resources, and updates per the spec)
    issues: tuple[Issue, ...] = ()  # informational issues for Prefer: return=OperationOutcome
