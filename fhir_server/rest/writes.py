"""Turning a validated resource into a storage write: id, `meta`, index entries, compartments.

https://hl7.org/fhir/R4/resource.html#Meta — the server owns `meta.versionId` and
`meta.lastUpdated`; everything else in `meta` (profile, security, tag, source) is the client's.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fhir_server import jsonio
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


def plan_put(resource: Json, id: str, expected_version: int, now: datetime, method: str = "PUT") -> WriteOp:
    """A WriteOp storing `resource` as version expected_version + 1 of `Type/id`."""
    stamped = stamp(resource, id, expected_version + 1, now)
    entries = extract_entries(stamped)
    return WriteOp(
        resource_type=stamped["resourceType"],
        id=id,
        expected_version=expected_version,
        last_updated=now,
        body=encode(stamped),
        entries=entries,
        compartments=patient_compartments(stamped, entries),
        method=method,
    )


def stored_index(resource_type: str, id: str, body: bytes) -> tuple[list[IndexEntry], tuple[str, ...]]:
    """The index entries and compartments of a stored body, as `plan_put` made them (for reindex)."""
    resource = decode(body)
    entries = extract_entries(resource)
    return entries, patient_compartments(resource, entries)


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
    """`W/"3"` or `"3"` -> 3; anything else -> None."""
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    return int(text) if text.isdigit() else None
