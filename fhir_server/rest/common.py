"""Checks every interaction shares: is the type one we serve, is the id well formed."""

from __future__ import annotations

import re
from typing import Any

from fhir_server import jsonio
from fhir_server.errors import BadRequest, Gone, NotFound
from fhir_server.storage.port import StoredResource
from fhir_server.validation import supported_types

ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DOT_SEGMENTS = (".", "..")


def require_type(resource_type: str) -> str:
    if resource_type not in supported_types():
        raise NotFound(f"'{resource_type}' is not a resource type this server supports")
    return resource_type


def require_id(id: str) -> str:
    if not ID_PATTERN.fullmatch(id):
        raise BadRequest(
            f"'{id}' is not a valid FHIR id: use 1-64 characters from A-Z, a-z, 0-9, '-' and '.'"
        )
    if id in _DOT_SEGMENTS:
        # The id rule allows them, but in a URL they are dot segments (RFC 3986 5.2.4): clients and
        # proxies resolve `Patient/..` to the base, so such a resource could never be read back.
        raise BadRequest(f"'{id}' cannot be an id here: URLs resolve '.' and '..' away (RFC 3986)")
    return id


def require_live(stored: StoredResource | None, resource_type: str, id: str) -> StoredResource:
    """The current version, or 404 if never written, or 410 if deleted."""
    if stored is None:
        raise NotFound(f"{resource_type}/{id} is not known")
    if stored.deleted:
        raise Gone(
            f"{resource_type}/{id} was deleted (version {stored.version_id})",
            headers={"ETag": f'W/"{stored.version_id}"'},
        )
    return stored


def parse_json(body: bytes, what: str = "The body") -> Any:
    """Any JSON a client sent, or a clear 400 (malformed, or nested beyond jsonio.MAX_DEPTH)."""
    try:
        return jsonio.loads_request(body)
    except jsonio.TooDeep as error:
        raise BadRequest(f"{what} is refused: {error}") from None
    except ValueError as error:  # JSONDecodeError, bad UTF-8, NaN/Infinity
        raise BadRequest(f"{what} is not valid JSON: {error}") from None


def parse_json_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a clear 400."""
    if not body.strip():
        raise BadRequest("The request has no body; send a FHIR resource as JSON")
    value = parse_json(body)
    if not isinstance(value, dict):
        raise BadRequest("The body must be a JSON object (a FHIR resource)")
    return value
