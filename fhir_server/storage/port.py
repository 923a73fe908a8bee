"""The storage port: what the FHIR layer needs from a store. Every adapter passes tests/contract/.

Adapters hold no FHIR logic beyond translating `SearchQuery` values into their own queries. The
REST layer decides ids, versions, `meta` and index entries; a store makes each `write` one atomic
unit (new versions + history + index entries, all or nothing) and refuses it with
`VersionConflict` when a resource's current version is not the one the writer saw.

Bodies cross the port as plain JSON bytes; an adapter may encrypt them at rest (per-patient
envelope encryption) without changing this interface, since routing needs only ids, `compartments`
and index entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from fhir_server.indexing.entries import IndexEntry, pack_entries, unpack_entries

if TYPE_CHECKING:
    from fhir_server.search.query import SearchPage, SearchQuery


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored. `body` is b"" for a deletion (tombstone)."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime  # timezone-aware UTC
    deleted: bool
    body: bytes
    method: str = "PUT"  # how this version came to be: POST, PUT, PATCH or DELETE (for history)


@dataclass(frozen=True, slots=True)
class WriteOp:
    """Write one new version of a resource.

    `expected_version` is the current version the writer based this on (0: none exists yet);
    the new version is `expected_version + 1`. `body=None` deletes (writes a tombstone).
    """

    resource_type: str
    id: str
    expected_version: int
    last_updated: datetime
    body: bytes | None
    entries: Sequence[IndexEntry] = ()
    compartments: tuple[str, ...] = ()  # e.g. ("Patient/123",): the patient compartments it is in
    method: str = "PUT"
    # Conditional create: commit only if this search, run inside the write before any of its ops is
    # applied, still matches nothing; else the whole write fails with ConditionConflict (two racing
    # creates cannot both happen; two in one transaction are both judged on the state before it).
    unless_match: SearchQuery | None = None

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        """Pickle with the entries packed (worker processes send many ops back: see rest.planning)."""
        packed = (pack_entries(self.entries), isinstance(self.entries, tuple))
        fields = (self.resource_type, self.id, self.expected_version, self.last_updated, self.body)
        return (_unpickle_op, (*fields, packed, self.compartments, self.method, self.unless_match))


def _unpickle_op(
    resource_type: str,
    id: str,
    expected_version: int,
    last_updated: datetime,
    body: bytes | None,
    packed: tuple[bytes, bool],
    compartments: tuple[str, ...],
    method: str,
    unless_match: SearchQuery | None,
) -> WriteOp:
    unpacked = unpack_entries(packed[0])
    entries = tuple(unpacked) if packed[1] else unpacked
    fields = (resource_type, id, expected_version, last_updated, body, entries, compartments, method)
    return WriteOp(*fields, unless_match)


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """History at system (no type), type (no id) or instance level. Newest first."""

    resource_type: str | None = None
    id: str | None = None
    since: datetime | None = None  # only versions with last_updated >= since
    at: datetime | None = None  # only the version current at that instant (per resource)
    count: int = 50
    offset: int = 0
    type_filter: frozenset[str] | None = None  # system level: only these types (access control)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[StoredResource]
    total: int
    next_offset: int | None = None


# (resource type, id, stored body) -> the resource's index entries and patient compartments.
IndexOf = Callable[[str, str, bytes], tuple[Sequence[IndexEntry], tuple[str, ...]]]


@dataclass
class StoreStats:
    resources: int = 0
    versions: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Store(Protocol):
    """The storage port. Methods are async; adapters may run blocking work in threads."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        """The current version (a tombstone if deleted), or None if never written."""
        ...

    async def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource | None: ...

    async def current_versions(self, resource_type: str, ids: Sequence[str]) -> dict[str, int]:
        """The current version number of each of `ids` that was ever written (a deletion counts:
        its tombstone is the current version); ids never written are absent. One round trip."""
        ...

    async def write(self, ops: Sequence[WriteOp]) -> list[StoredResource]:
        """Apply every op atomically or none; raise VersionConflict on a stale expected_version."""
        ...

    async def history(self, query: HistoryQuery) -> HistoryPage: ...

    async def search(self, query: SearchQuery) -> SearchPage: ...

    async def stats(self) -> StoreStats: ...

    async def index_version(self) -> int:
        """The `INDEX_VERSION` the store's index entries were made with (an empty store opens with
        the current one; a store from before versions were recorded answers 1)."""
        ...

    async def reindex(self, index_of: IndexOf, *, progress: Callable[[int], None] | None = None) -> int:
        """Make every current resource's index entries and compartments again with `index_of` from
        its stored body, in batches, without new versions; then record `INDEX_VERSION`. Returns how
        many resources were reindexed. Safe while the server runs: each batch is one write."""
        ...
