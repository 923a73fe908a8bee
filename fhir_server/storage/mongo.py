"""The MongoDB storage adapter, on PyMongo's async driver (`pymongo.AsyncMongoClient`).

For deployments that outgrow one machine: a replica set, or a sharded cluster (docs/mongodb.md has
the shard key, the indexes and how to run it). Same port and contract suite as the SQLite adapter;
no FHIR logic here beyond translating `SearchQuery` values (fhir_server.storage.mongo_query).

Every `write` is one multi-document transaction: the version check, the new current document, its
history version and its index entries commit together or not at all. The check is enforced twice:
the conditional replace (`{_id, version: expected}`) makes a racing writer's transaction conflict
and, on retry, see the new version; the unique `{res, version}` index on history refuses a second
version 1 even where `_id` uniqueness is only per shard.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from pymongo import AsyncMongoClient, IndexModel, UpdateOne
from pymongo.errors import DuplicateKeyError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from fhir_server.errors import ConditionConflict, VersionConflict
from fhir_server.indexing.entries import INDEX_VERSION
from fhir_server.instants import to_micros
from fhir_server.storage import mongo_docs as layout
from fhir_server.storage.cursors import CursorSealer, new_key
from fhir_server.storage.mongo_paging import KeysetMemo, after_filter
from fhir_server.storage.port import (
    HistoryPage,
    HistoryQuery,
    IndexOf,
    StoredResource,
    StoreStats,
    WriteOp,
)

if TYPE_CHECKING:
    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase

    from fhir_server.search.query import SearchPage, SearchQuery

Doc = dict[str, Any]
# Fields a read returns: everything but the index, sort keys and routing data.
_STORED_FIELDS = {"type": 1, "id": 1, "version": 1, "last_updated": 1, "deleted": 1, "method": 1, "body": 1}
_HISTORY_ORDER = [("last_updated", -1), ("seq", -1)]
REINDEX_BATCH = 1000  # resources read per batch (each then updated by its own update_one)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # (reindex builds WriteOps only to reuse the layout)


class MongoStore:
    """Implements `fhir_server.storage.port.Store` on MongoDB (replica set or sharded cluster)."""

    def __init__(
        self,
        uri: str,
        *,
        database: str | None = None,
        write_concern: str | int = "majority",
        read_concern: str = "majority",
    ) -> None:
        self.uri = uri
        self._database_name = database
        self._write_concern = WriteConcern(w=write_concern)
        self._read_concern = ReadConcern(read_concern)
        self._client: AsyncMongoClient[Doc] | None = None
        self._db: AsyncDatabase[Doc] | None = None
        self._last_seq = 0
        self._history_pages = KeysetMemo()
        self.search_pages = KeysetMemo()
        self.cursors = CursorSealer(new_key())  # replaced by the database's own key on open

    @classmethod
    def in_memory_stand_in(cls, database: str = "fhir") -> MongoStore:
        """This adapter on the in-process mongomock stand-in (tests only; see mongo_standin)."""
        from fhir_server.storage.mongo_standin import StandInClient

        store = cls("mongodb://stand-in", database=database)
        # The stand-in implements the driver calls this adapter makes; the cast says so to mypy.
        store._client = cast("AsyncMongoClient[Doc]", StandInClient(database))
        return store

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is None:
            self._client = AsyncMongoClient(self.uri)
        concerns: Mapping[str, Any] = {
            "write_concern": self._write_concern,
            "read_concern": self._read_concern,
        }
        if self._database_name is not None:
            self._db = self._client.get_database(self._database_name, **concerns)
        else:
            self._db = self._client.get_default_database("fhir", **concerns)
        await self._create_indexes()
        # The key that seals paging cursors: made once, then the same for every process and server.
        meta = self._collection(layout.META)
        await meta.update_one({"_id": "cursor-key"}, {"$setOnInsert": {"value": new_key()}}, upsert=True)
        found = await meta.find_one({"_id": "cursor-key"})
        assert found is not None
        self.cursors = CursorSealer(bytes(found["value"]))
        # The INDEX_VERSION of the stored entries: the current one for a new store, else 1 (made
        # before versions were recorded) until `reindex` records the current one.
        empty = await self.resources.find_one({}, {"_id": 1}) is None
        version = INDEX_VERSION if empty else 1
        await meta.update_one({"_id": "index-version"}, {"$setOnInsert": {"value": version}}, upsert=True)

    async def _create_indexes(self) -> None:
        by_collection: dict[str, list[IndexModel]] = {}
        for name, keys, options in layout.INDEXES:
            by_collection.setdefault(name, []).append(IndexModel(list(keys), **options))
        for name, models in by_collection.items():
            await self._collection(name).create_indexes(models)

    async def index_version(self) -> int:
        found = await self._collection(layout.META).find_one({"_id": "index-version"})
        return int(found["value"]) if found else 1

    async def reindex(self, index_of: IndexOf, *, progress: Callable[[int], None] | None = None) -> int:
        """Batch by batch in `_id` order; each document is updated only if still at the version
        read, so a write racing with the reindex keeps the entries it made. The partition key is
        left as it is (moving a document between shards is a delete and an insert)."""
        done, after = 0, ""
        fields = {"type": 1, "id": 1, "version": 1, "body": 1}
        while True:
            found = self.resources.find(
                {"_id": {"$gt": after}, "deleted": False}, fields, sort=[("_id", 1)], limit=REINDEX_BATCH
            )
            batch = await found.to_list(None)
            if not batch:
                break
            updates = []
            for doc in batch:
                entries, compartments = index_of(doc["type"], doc["id"], bytes(doc["body"]))
                op = WriteOp(doc["type"], doc["id"], 0, _EPOCH, b"", entries, compartments)
                changes = {
                    "compartments": layout.compartments(op),
                    "ix": [layout.entry_doc(e) for e in dict.fromkeys(entries)],
                    "sk": layout.sort_keys(entries),
                }
                updates.append(UpdateOne({"_id": doc["_id"], "version": doc["version"]}, {"$set": changes}))
            # One round trip per batch; unordered: each update stands alone (a document a write
            # changed meanwhile matches nothing and keeps that write's entries).
            await self.resources.bulk_write(updates, ordered=False)
            done, after = done + len(batch), batch[-1]["_id"]
            if progress is not None:
                progress(len(batch))
        meta = self._collection(layout.META)
        await meta.update_one({"_id": "index-version"}, {"$set": {"value": INDEX_VERSION}}, upsert=True)
        return done

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = self._db = None

    async def drop_database(self) -> None:
        """Remove this store's database (used by the contract suite to clean up)."""
        assert self._client is not None and self._db is not None, "store is not open"
        await self._client.drop_database(self._db.name)

    def _collection(self, name: str) -> AsyncCollection[Doc]:
        assert self._db is not None, "store is not open"
        return self._db.get_collection(name)

    @property
    def resources(self) -> AsyncCollection[Doc]:
        return self._collection(layout.RESOURCES)

    @property
    def versions(self) -> AsyncCollection[Doc]:
        return self._collection(layout.HISTORY)

    # -- reads -----------------------------------------------------------------------------------

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        doc = await self.resources.find_one({"_id": layout.resource_key(resource_type, id)}, _STORED_FIELDS)
        return layout.to_stored(doc) if doc else None

    async def current_versions(self, resource_type: str, ids: Sequence[str]) -> dict[str, int]:
        keys = [layout.resource_key(resource_type, id) for id in dict.fromkeys(ids)]
        found: dict[str, int] = {}
        async for doc in self.resources.find({"_id": {"$in": keys}}, {"id": 1, "version": 1}):
            found[doc["id"]] = doc["version"]
        return found

    async def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource | None:
        key = layout.resource_key(resource_type, id)
        doc = await self.versions.find_one({"res": key, "version": version_id}, _STORED_FIELDS)
        return layout.to_stored(doc) if doc else None

    async def stats(self) -> StoreStats:
        live = await self.resources.count_documents({"deleted": False})
        versions = await self.versions.count_documents({})
        return StoreStats(resources=live, versions=versions)

    async def search(self, query: SearchQuery) -> SearchPage:
        from fhir_server.storage.mongo_search import run_search

        page: SearchPage = await run_search(self, query)
        return page

    # -- history ---------------------------------------------------------------------------------

    async def history(self, query: HistoryQuery) -> HistoryPage:
        match = history_filter(query)
        if query.at is not None:
            return await self._history_at(match, query)
        total = await self.versions.count_documents(match)
        if query.count <= 0:  # a driver limit of 0 means "no limit"
            return _history_page([], total, query.offset)
        memo_key = ("history", match, query.count)
        after = self._history_pages.get(memo_key, query.offset)
        page_filter = {"$and": [match, after_filter(_HISTORY_ORDER, after)]} if after else match
        docs = await self.versions.find(
            page_filter,
            _STORED_FIELDS | {"seq": 1},
            sort=_HISTORY_ORDER,
            skip=0 if after else query.offset,
            limit=query.count,
        ).to_list(query.count)
        following = query.offset + len(docs)
        if docs and following < total:
            self._history_pages.put(memo_key, following, [docs[-1][k] for k, _ in _HISTORY_ORDER])
        return _history_page(docs, total, query.offset)

    async def _history_at(self, match: Doc, query: HistoryQuery) -> HistoryPage:
        """The version of each resource current at `at`: its newest version written at or before it."""
        assert query.at is not None
        pipeline = history_at_pipeline(match, to_micros(query.at), query.since)
        counted = await (await self.versions.aggregate([*pipeline, {"$count": "n"}])).to_list(1)
        total = int(counted[0]["n"]) if counted else 0
        if query.count <= 0:
            return _history_page([], total, query.offset)
        page = [*pipeline, {"$sort": dict(_HISTORY_ORDER)}, {"$skip": query.offset}, {"$limit": query.count}]
        docs = await (await self.versions.aggregate(page)).to_list(query.count)
        return _history_page(docs, total, query.offset)

    # -- writes ----------------------------------------------------------------------------------

    async def write(self, ops: Sequence[WriteOp]) -> list[StoredResource]:
        """All ops in one transaction; VersionConflict (and nothing written) on a stale version."""
        assert self._client is not None, "store is not open"
        attempt: list[WriteOp] = []  # the op being applied, to name it if a duplicate key ends it

        async def apply(session: AsyncClientSession) -> list[StoredResource]:
            for op in ops:  # conditions first: judged against the state before this write
                if op.unless_match is not None:
                    await self._claim(op, op.unless_match, session)
            results = []
            for op in ops:
                attempt[:] = [op]
                results.append(await self._write_one(op, session))
            return results

        async with self._client.start_session() as session:
            try:
                return await session.with_transaction(
                    apply, read_concern=self._read_concern, write_concern=self._write_concern
                )
            except DuplicateKeyError:
                # A racing writer created the same resource (or version) first and committed.
                op = attempt[0]
                current = await self.read(op.resource_type, op.id)
                actual = current.version_id if current else op.expected_version + 1
                raise VersionConflict(op.resource_type, op.id, op.expected_version, actual) from None

    async def _write_one(self, op: WriteOp, session: AsyncClientSession) -> StoredResource:
        key = layout.resource_key(op.resource_type, op.id)
        current = await self.resources.find_one(
            {"_id": key}, {"version": 1, "pk": 1, "cs": 1}, session=session
        )
        actual = int(current["version"]) if current else 0
        if actual != op.expected_version:
            raise VersionConflict(op.resource_type, op.id, op.expected_version, actual)
        version = actual + 1
        seq = self._next_seq()
        pk = layout.partition_key(op, current.get("pk") if current else None)
        doc = layout.resource_doc(op, version, current["cs"] if current else seq, pk)
        if current is None:
            await self.resources.insert_one(doc, session=session)
        else:
            # The filter carries the old `pk` so a sharded cluster can target the owning shard.
            guard = {"_id": key, "version": actual, "pk": current.get("pk")}
            replaced = await self.resources.replace_one(guard, doc, session=session)
            if replaced.matched_count == 0:
                raise VersionConflict(op.resource_type, op.id, op.expected_version, actual + 1)
        await self.versions.insert_one(layout.history_doc(op, version, seq, pk), session=session)
        return StoredResource(
            op.resource_type, op.id, version, op.last_updated, op.body is None, op.body or b"", op.method
        )

    async def _claim(self, op: WriteOp, unless_match: SearchQuery, session: AsyncClientSession) -> None:
        """A conditional create commits only while its criteria match nothing. Snapshot isolation
        alone would let two racing creates both see no match and both commit, so each also writes
        its criteria's claim document: MongoDB lets only one of two transactions writing the same
        document commit, and the other's retry then sees the first one's resource here."""
        from fhir_server.storage.mongo_search import matches_any

        criteria = repr((unless_match.resource_types, unless_match.criteria)).encode()
        claim = {"_id": hashlib.sha256(criteria).hexdigest()}
        claims = self._collection(layout.CLAIMS)
        await claims.update_one(claim, {"$inc": {"n": 1}}, upsert=True, session=session)
        if await matches_any(self, unless_match, session):
            raise ConditionConflict(op.resource_type, op.id, op.expected_version)

    def _next_seq(self) -> int:
        """A tie-break for versions with equal last_updated: wall-clock ns, strictly increasing in this
        process. Not a shared counter, which would make every write in the cluster contend on it."""
        self._last_seq = max(self._last_seq + 1, time.time_ns())
        return self._last_seq


def _history_page(docs: list[Doc], total: int, offset: int) -> HistoryPage:
    following = offset + len(docs)
    return HistoryPage([layout.to_stored(d) for d in docs], total, following if following < total else None)


def history_filter(query: HistoryQuery) -> Doc:
    """The `history` collection filter for a history query (all but `at`)."""
    match: Doc = {}
    if query.resource_type is not None and query.id is not None:
        match["res"] = layout.resource_key(query.resource_type, query.id)
    elif query.resource_type is not None:
        match["type"] = query.resource_type
    elif query.id is not None:
        match["id"] = query.id
    if query.type_filter is not None:
        match.setdefault("$and", []).append({"type": {"$in": sorted(query.type_filter)}})
    if query.since is not None and query.at is None:
        match["last_updated"] = {"$gte": to_micros(query.since)}
    return match


def history_at_pipeline(match: Doc, at_us: int, since: Any) -> list[Doc]:
    """Versions written at or before `at`, newest per resource, then those at or after `since`."""
    pipeline: list[Doc] = [
        {"$match": {**match, "last_updated": {"$lte": at_us}}},
        {"$sort": {"res": 1, "version": -1}},
        {"$group": {"_id": "$res", "doc": {"$first": "$$ROOT"}}},
        {"$replaceRoot": {"newRoot": "$doc"}},
    ]
    if since is not None:
        pipeline.append({"$match": {"last_updated": {"$gte": to_micros(since)}}})
    return pipeline
