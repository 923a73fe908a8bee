"""Turning a validated resource into a storage write: id, `meta`, index entries, compartments.

https://hl7.org/fhir/R4/resource.html#Meta — the server owns `meta.versionId` and
`meta.lastUpdated`; everything else in `meta` (profile, security, tag, source) is the client's.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from fhir_server import jsonio
from fhir_server.digits import ascii_whole
from fhir_server.errors import ConditionConflict, Conflict, PreconditionFailed, VersionConflict
from fhir_server.indexing.entries import IndexEntry
from fhir_server.indexing.extract import extract_entries, patient_compartments
from fhir_server.storage.port import StoredResource, WriteOp

Json = dict[str, Any]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def format_instant(moment: datetime) -> str:
    """A FHIR instant with microseconds, so versions written in the same millisecond still order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def stamp(resource: Json, id: str, version: int, last_updated: datetime) -> Json:
    """Set the server-owned parts: id, meta.versionId, meta.lastUpdated (keeping the rest of meta)."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = format_instant(last_updated)
    stamped = {"resourceType": resource["resourceType"], "id": id, "meta": meta}
    stamped.update((k, v) for k, v in resource.items() if k not in stamped)
    return stamped


def encode(resource: Json) -> bytes:
    return jsonio.dumps(resource)


def decode(body: bytes) -> Json:
    value: Json = jsonio.loads(body)
    return value


def plan_put(
    resource: Json,
    id: str,
    expected_version: int,
    now: datetime,
    method: str = "PUT",
    *,
    own_base: str | None = None,
) -> WriteOp:
    """A WriteOp storing `resource` as version expected_version + 1 of `Type/id`.

    `own_base`: this server's FHIR base; references to it are stored relative (`relative_references`).
    """
    stamped = stamp(resource, id, expected_version + 1, now)
    body = encode(stamped)
    localized = _own_references_relative(stamped, body, own_base)
    if localized is not stamped:
        stamped, body = localized, encode(localized)
    entries = extract_entries(stamped)
    return WriteOp(
        resource_type=stamped["resourceType"],
        id=id,
        expected_version=expected_version,
        last_updated=now,
        body=body,
        entries=entries,
        compartments=patient_compartments(stamped, entries),
        method=method,
    )


def stored_index(
    resource_type: str, id: str, body: bytes, own_base: str | None = None
) -> tuple[list[IndexEntry], tuple[str, ...]]:
    """The index entries and compartments of a stored body, as `plan_put` would make them now (for
    reindex): given `own_base`, references to it count as relative, as a write today stores them;
    the body itself stays as it was written."""
    resource = _own_references_relative(decode(body), body, own_base)
    entries = extract_entries(resource)
    return entries, patient_compartments(resource, entries)


def _own_references_relative(resource: Json, body: bytes, own_base: str | None) -> Json:
    """`relative_references` of `resource` (serialised as `body`), looked for only when the body
    holds the base at all: a byte search, so most resources cost nothing more."""
    if own_base and (own_base.rstrip("/") + "/").encode() in body:
        return relative_references(resource, own_base)
    return resource


_LOCAL = re.compile(r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?")


def relative_references(resource: Json, own_base: str) -> Json:
    """`resource` with every Reference.reference to this server written absolutely
    (`[own_base]/Type/id[/_history/v]`) in its relative form `Type/id[/_history/v]`; the same object
    when there is none.

    A relative reference is relative to the server's base (references.html#literal), so the two
    mean the same resource; storing one form lets search, compartments and `_include` match them
    alike (search.html#reference), and a server that moves to another base keeps its references
    resolving. Bundles are stored as written: a document's references resolve against its
    entries' fullUrls and may be signed."""
    if resource.get("resourceType") == "Bundle":
        return resource
    prefix = own_base.rstrip("/") + "/"
    changed = _relative(resource, prefix)
    return resource if changed is None else changed


def _relative(node: Any, prefix: str) -> Any:
    """The node with own references made relative, or None when nothing changed (no copies)."""
    if isinstance(node, dict):
        out: dict[str, Any] | None = None
        for key, value in node.items():
            new = _relative(value, prefix) if isinstance(value, dict | list) else None
            if key == "reference" and isinstance(value, str) and value.startswith(prefix):
                local = value[len(prefix) :]
                new = local if _LOCAL.fullmatch(local) else None
            if new is not None:
                out = dict(node) if out is None else out
                out[key] = new
        return out
    if isinstance(node, list):
        items = [_relative(item, prefix) if isinstance(item, dict | list) else None for item in node]
        if all(item is None for item in items):
            return None
        return [node[i] if item is None else item for i, item in enumerate(items)]
    return None


def plan_delete(current: StoredResource, now: datetime) -> WriteOp:
    return WriteOp(
        resource_type=current.resource_type,
        id=current.id,
        expected_version=current.version_id,
        last_updated=now,
        body=None,
        method="DELETE",
    )


def version_conflict_error(error: VersionConflict, *, if_match: bool) -> Exception:
    """A lost race: 412 when the client named the version it expected, else 409."""
    where = f"{error.resource_type}/{error.resource_id}"
    if isinstance(error, ConditionConflict):
        return Conflict(
            f"A {error.resource_type} matching the conditional criteria was written by a concurrent request; "
            "retry the request to have the criteria judged again."
        )
    if if_match:
        return PreconditionFailed(
            f"{where} was changed by someone else: it is now version {error.actual}, "
            f"not {error.expected}. Read it again and retry with the new ETag."
        )
    return Conflict(f"{where} was changed by a concurrent request; retry the request.")


def parse_etag(value: str) -> int | None:
    """`W/"3"` or `"3"` -> 3; anything else -> None. A version beyond any store's (digits.CEILING)
    reads as CEILING, which matches no resource's version: an If-Match with it fails as it should."""
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    return ascii_whole(text.strip('"'))
