"""How the MongoDB adapter lays out its documents: pure functions from port values to BSON-ready dicts.

Two collections (see docs/mongodb.md):
- `resources`: one document per logical resource holding its current version, with the search index
  embedded as `ix`, an array of small typed sub-documents, so one multikey index per entry shape
  serves every parameter of that shape and `$elemMatch` makes the parts of one entry match together.
- `history`: one document per version, the source of vread and _history.

Kept free of I/O so the layout is unit-testable as plain values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fhir_server.indexing.entries import (
    CompositeEntry,
    DateEntry,
    IndexEntry,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
    is_range,
)
from fhir_server.instants import from_micros, to_micros
from fhir_server.storage.port import StoredResource, WriteOp

Doc = dict[str, Any]

RESOURCES = "resources"
WORD_LISTS = frozenset({"_text", "_content"})  # string entries holding a resource's folded words
HISTORY = "history"
# One small document per set of conditional-create criteria, written by each such create in its
# transaction, so that two racing creates on the same criteria conflict (see MongoStore._claim).
CLAIMS = "claims"
META = "meta"  # the store's own settings, e.g. the key that seals paging cursors

# (collection, keys, options). Created idempotently at open(): create_index is a no-op when an index
# with the same keys and options exists. The entry indexes lead with `type` and `ix.p` because every
# search names its resource type(s) and every clause its parameter; the multikey part that follows is
# what the clause compares (token system+code, date range, reference target, string/uri/number value).
INDEXES: tuple[tuple[str, tuple[tuple[str, int], ...], Mapping[str, Any]], ...] = (
    (RESOURCES, (("type", 1), ("ix.p", 1), ("ix.s", 1), ("ix.c", 1)), {"name": "ix_token"}),
    (RESOURCES, (("type", 1), ("ix.p", 1), ("ix.lo", 1), ("ix.hi", 1)), {"name": "ix_range"}),
    (RESOURCES, (("type", 1), ("ix.p", 1), ("ix.rt", 1), ("ix.ri", 1)), {"name": "ix_reference"}),
    (RESOURCES, (("type", 1), ("ix.p", 1), ("ix.u", 1)), {"name": "ix_reference_url"}),
    (RESOURCES, (("type", 1), ("ix.p", 1), ("ix.v", 1)), {"name": "ix_value"}),
    (RESOURCES, (("type", 1), ("ix.p", 1), ("ix.e", 1)), {"name": "ix_exact"}),
    (RESOURCES, (("type", 1), ("id", 1)), {"name": "type_id"}),
    (RESOURCES, (("type", 1), ("last_updated", 1), ("_id", 1)), {"name": "type_last_updated"}),
    (RESOURCES, (("type", 1), ("cs", 1), ("_id", 1)), {"name": "type_created"}),
    (RESOURCES, (("compartments", 1), ("type", 1)), {"name": "compartments_type"}),
    (HISTORY, (("res", 1), ("version", -1)), {"name": "res_version", "unique": True}),
    (HISTORY, (("type", 1), ("last_updated", -1), ("seq", -1)), {"name": "type_last_updated"}),
    (HISTORY, (("last_updated", -1), ("seq", -1)), {"name": "last_updated"}),
)


def resource_key(resource_type: str, id: str) -> str:
    """The `_id` of a resource document and the `res` of its versions: "Patient/123"."""
    return f"{resource_type}/{id}"


def partition_key(op: WriteOp, previous: str | None = None) -> str:
    """The value a sharded cluster may use as shard key (`pk`): the patient compartment that owns the
    resource (a Patient owns itself), else the resource itself. Keeps one patient's data together.
    A tombstone carries no compartments, so it keeps the key it had (`previous`): a delete does not
    move a document between shards."""
    key = resource_key(op.resource_type, op.id)
    if op.body is None and previous is not None:
        return previous
    if op.resource_type == "Patient":
        return key
    return op.compartments[0] if op.compartments else key


def resource_doc(op: WriteOp, version: int, created: int, pk: str) -> Doc:
    """The current-version document. A tombstone keeps no index entries: no search finds it.

    `cs` (creation sequence) is kept across versions: the default, stable order of search results.
    `pk` is the partition key (see `partition_key`).
    """
    live = op.body is not None
    return {
        "_id": resource_key(op.resource_type, op.id),
        "type": op.resource_type,
        "id": op.id,
        "version": version,
        "last_updated": to_micros(op.last_updated),
        "deleted": not live,
        "method": op.method,
        "body": op.body or b"",
        "pk": pk,
        "cs": created,
        "compartments": compartments(op) if live else [],
        "ix": [entry_doc(e) for e in dict.fromkeys(op.entries)] if live else [],
        "sk": sort_keys(op.entries) if live else {},
    }


def compartments(op: WriteOp) -> list[str]:
    """The patient compartments the resource is in; a Patient is in its own, so one `$in` on this
    array (index `{compartments, type}`) answers compartment searches and access narrowing."""
    found = list(dict.fromkeys(op.compartments))
    own = resource_key(op.resource_type, op.id)
    if op.resource_type == "Patient" and own not in found:
        found.append(own)
    return found


def history_doc(op: WriteOp, version: int, seq: int, pk: str) -> Doc:
    """One version. `seq` breaks ties between versions written in the same microsecond."""
    return {
        "res": resource_key(op.resource_type, op.id),
        "type": op.resource_type,
        "id": op.id,
        "version": version,
        "last_updated": to_micros(op.last_updated),
        "deleted": op.body is None,
        "method": op.method,
        "body": op.body or b"",
        "pk": pk,
        "seq": seq,
    }


def to_stored(doc: Mapping[str, Any]) -> StoredResource:
    """A resource or history document back into the port's value (bytes returned as stored)."""
    return StoredResource(
        doc["type"],
        doc["id"],
        int(doc["version"]),
        from_micros(int(doc["last_updated"])),
        bool(doc["deleted"]),
        bytes(doc.get("body") or b""),
        str(doc.get("method", "PUT")),
    )


# -- index entries ---------------------------------------------------------------------------------


def entry_doc(entry: IndexEntry) -> Doc:
    """One index entry as a sub-document of `ix`: `p` the parameter, `k` the kind, then its parts."""
    return {"p": entry.param, **entry_parts(entry)}


def entry_parts(entry: IndexEntry) -> Doc:
    """The kind tag and the typed parts of an entry (shared by top-level and composite components)."""
    match entry:
        case TokenEntry(system=system, code=code, text=text):
            return {"k": "t", "s": system, "c": code, "x": text}
        case StringEntry(param=param, value=value, exact=exact):
            # The `_text`/`_content` word lists are never matched `:exact`; not storing them twice
            # keeps large resources well under the 16 MB document limit.
            return {"k": "s", "v": value} if param in WORD_LISTS else {"k": "s", "v": value, "e": exact}
        case DateEntry(low=low, high=high):
            return {"k": "d", "lo": low, "hi": high}
        case NumberEntry(value=value, low=low, high=high):
            return {"k": "n", "v": value, "lo": low, "hi": high, **_range_mark(value, low, high)}
        case QuantityEntry(value=value, low=low, high=high, system=system, code=code, unit=unit):
            parts = {"k": "q", "v": value, "lo": low, "hi": high, "s": system, "c": code, "un": unit}
            return {**parts, **_range_mark(value, low, high)}
        case ReferenceEntry():
            return _reference_parts(entry)
        case UriEntry(value=value):
            return {"k": "u", "v": value}
        case CompositeEntry(components=components):
            # One sub-document per combination, components under c0, c1...: `$elemMatch` on
            # "c0.c", "c1.lo" then matches the parts of one combination together.
            return {"k": "c", **{f"c{i}": entry_parts(c) for i, c in enumerate(components)}}
    raise TypeError(f"not an index entry: {entry!r}")


def _range_mark(value: float, low: float, high: float) -> Doc:
    """`rg: True` on a number or quantity entry from a Range, which searches compare by its ends
    (mongo_query.span_filter); a filter cannot compare two fields of one `ix` entry, so the mark is
    stored. Entries written before the mark existed are compared as single numbers until rewritten."""
    return {"rg": True} if is_range(value, low, high) else {}


def _reference_parts(entry: ReferenceEntry) -> Doc:
    return {
        "k": "r",
        "rt": entry.target_type,
        "ri": entry.target_id,
        "u": entry.url,
        "is": entry.identifier_system,
        "iv": entry.identifier_value,
    }


# -- sort keys -------------------------------------------------------------------------------------


def sort_keys(entries: Sequence[IndexEntry]) -> Doc:
    """Per parameter: `h` 1 (has a value), `a` the value an ascending sort uses (the smallest) and `d`
    the one a descending sort uses (the largest), as FHIR asks for multi-valued parameters.
    Precomputed because sorting on the `ix` array would mix the values of every parameter."""
    keys: dict[str, tuple[Any, Any]] = {}
    for entry in entries:
        if entry.param in WORD_LISTS:
            continue  # not sortable, and large
        low, high = _sort_values(entry)
        if low is None or high is None:
            continue
        if entry.param in keys:
            a, d = keys[entry.param]
            low, high = min(a, low), max(d, high)
        keys[entry.param] = (low, high)
    return {param: {"h": 1, "a": a, "d": d} for param, (a, d) in keys.items()}


def _sort_values(entry: IndexEntry) -> tuple[Any, Any]:
    """(ascending, descending) sort value of one entry; the same columns the SQLite adapter sorts on."""
    match entry:
        case StringEntry(value=value) | UriEntry(value=value):
            return value, value
        case TokenEntry(code=code):
            return code, code
        case DateEntry(low=low, high=high):
            return low, high
        case NumberEntry(value=value) | QuantityEntry(value=value):
            return value, value
        case ReferenceEntry(target_type=rt, target_id=ri, url=url):
            ref = f"{rt}/{ri}" if rt is not None and ri is not None else url
            return ref, ref
    return None, None
