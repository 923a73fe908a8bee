"""Turning an interaction's Result into an HTTP response: headers, Prefer, _pretty, conditional reads.

https://hl7.org/fhir/R4/http.html#versioning (ETag, Last-Modified, Location), #return (Prefer),
#cread (If-None-Match, If-Modified-Since).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache

from starlette.requests import Request
from starlette.responses import Response

from fhir_server import jsonio
from fhir_server.errors import Issue
from fhir_server.http.negotiation import response_media_type
from fhir_server.rest.outcome import outcome_bytes
from fhir_server.rest.result import Result
from fhir_server.rest.writes import parse_etag
from fhir_server.storage.port import StoredResource


@dataclass(frozen=True, slots=True)
class Presentation:
    """How the client wants answers: media type, pretty printing, and Prefer: return=."""

    media_type: str
    pretty: bool
    prefer_return: str  # minimal | representation | OperationOutcome


def presentation(request: Request) -> Presentation:
    headers = request.headers
    accept, prefer_header = headers.get("accept"), headers.get("prefer")
    if not request.scope.get("query_string") and prefer_header is None:
        return _plain(accept)  # the common case: no _format/_pretty, no Prefer
    params = request.query_params
    prefer = _prefer(prefer_header)
    return Presentation(
        media_type=response_media_type(accept, params.get("_format")),
        pretty=params.get("_pretty", "false").lower() == "true",
        prefer_return=prefer.get("return", "representation"),
    )


@lru_cache(maxsize=256)
def _plain(accept: str | None) -> Presentation:
    return Presentation(response_media_type(accept, None), False, "representation")


def _prefer(header: str | None) -> dict[str, str]:
    """`Prefer: return=minimal, handling=lenient` -> {"return": "minimal", "handling": "lenient"}."""
    found: dict[str, str] = {}
    for part in (header or "").replace(";", ",").split(","):
        key, _, value = part.strip().partition("=")
        if key and value:
            found[key.strip().lower()] = value.strip().strip('"')
    return found


def is_lenient(request: Request) -> bool:
    header = request.headers.get("prefer")
    return header is not None and _prefer(header).get("handling") == "lenient"


def http_date(moment: datetime) -> str:
    return _http_date(int(moment.timestamp()))


@lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    return format_datetime(datetime.fromtimestamp(seconds, UTC), usegmt=True)


def fhir_response(
    result: Result, how: Presentation, base_url: str, *, write: bool = False, request: Request | None = None
) -> Response:
    headers: dict[str, str] = {}
    stored = result.stored
    if stored is not None:
        headers["ETag"] = f'W/"{stored.version_id}"'
        headers["Last-Modified"] = http_date(stored.last_updated)
        if result.location:
            headers["Location"] = (
                f"{base_url}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
            )
        if request is not None and not write and _not_modified(request, stored):
            return Response(status_code=304, headers=headers)
    body = _body(result, how, write)
    if body is None:
        return Response(status_code=result.status, headers=headers)
    if how.pretty:
        body = jsonio.dumps(jsonio.loads(body), pretty=True)
    return Response(body, result.status, headers, media_type=f"{how.media_type}; charset=utf-8")


def _body(result: Result, how: Presentation, write: bool) -> bytes | None:
    if result.status == 204:
        return None
    if write and how.prefer_return == "minimal":
        return None
    if write and how.prefer_return == "OperationOutcome":
        return outcome_bytes([_write_summary(result)])
    if result.body is not None:
        return result.body
    if result.stored is not None and not result.stored.deleted:
        return result.stored.body
    return None


def _write_summary(result: Result) -> Issue:
    stored = result.stored
    what = f"{stored.resource_type}/{stored.id} version {stored.version_id}" if stored else "the request"
    verb = {201: "Created", 200: "Done:"}.get(result.status, "Processed")
    return Issue(f"{verb} {what}", code="informational", severity="information")


def _not_modified(request: Request, stored: StoredResource) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        return any(parse_etag(tag) == stored.version_id for tag in if_none_match.split(","))
    since = request.headers.get("if-modified-since")
    if since is not None:
        try:
            moment = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        if moment.tzinfo is None:  # `-0000`: RFC 9110 5.6.7 says HTTP dates are UTC
            moment = moment.replace(tzinfo=UTC)
        return stored.last_updated.replace(microsecond=0) <= moment
    return False
