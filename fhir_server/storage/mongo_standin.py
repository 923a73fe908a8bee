"""An in-process stand-in for `pymongo.AsyncMongoClient`, built on mongomock, for tests only.

MongoDB cannot be installed where this project is developed, so the Mongo adapter's code paths run
against this double of the *driver* (not of our adapter): it implements the subset of PyMongo's
async API that `fhir_server.storage.mongo` uses, with mongomock doing the query matching.

What it does and does not model (docs/mongodb.md repeats this):
- Transactions: `with_transaction` serialises writers on one asyncio.Lock and undoes every write of
  a failed callback, so atomicity and the version check under races are exercised. It does not model
  isolation from readers (a reader may see a transaction's writes before it commits), retries on
  TransientTransactionError, write concerns or read concerns (accepted and ignored).
- Indexes: created through mongomock, which enforces `unique` but plans no queries with them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import mongomock
from pymongo import IndexModel, UpdateOne

T = TypeVar("T")
Doc = dict[str, Any]
_Undo = tuple[Any, Any, Doc | None]  # (mongomock collection, _id, document before the write or None)


class StandInClient:
    """Quacks like `AsyncMongoClient` for the calls the adapter makes."""

    def __init__(self, default_database: str = "fhir") -> None:
        self._sync: Any = mongomock.MongoClient()
        self._default = default_database
        self._writers: asyncio.Lock | None = None

    def writers_lock(self) -> asyncio.Lock:
        # Created lazily so it belongs to the running event loop.
        if self._writers is None:
            self._writers = asyncio.Lock()
        return self._writers

    def get_database(self, name: str | None = None, **_concerns: Any) -> StandInDatabase:
        return StandInDatabase(self._sync[name or self._default])

    def get_default_database(self, default: str | None = None, **_concerns: Any) -> StandInDatabase:
        return self.get_database(default)

    def start_session(self, **_options: Any) -> StandInSession:
        return StandInSession(self)

    async def drop_database(self, name: str) -> None:
        self._sync.drop_database(name)

    async def close(self) -> None:
        self._sync.close()


class StandInDatabase:
    def __init__(self, sync: Any) -> None:
        self._sync = sync
        self.name: str = sync.name

    def get_collection(self, name: str, **_concerns: Any) -> StandInCollection:
        return StandInCollection(self._sync[name])


class StandInSession:
    """A session whose transaction is all-or-nothing by undo log, and one writer at a time."""

    def __init__(self, client: StandInClient) -> None:
        self._client = client
        self.undo: list[_Undo] | None = None  # set while a transaction runs

    async def __aenter__(self) -> StandInSession:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.undo = None

    async def with_transaction(
        self, callback: Callable[[StandInSession], Awaitable[T]], **_options: Any
    ) -> T:
        async with self._client.writers_lock():
            self.undo = []
            try:
                return await callback(self)
            except BaseException:
                self._roll_back()
                raise
            finally:
                self.undo = None

    def _roll_back(self) -> None:
        for collection, key, before in reversed(self.undo or []):
            if before is None:
                collection.delete_one({"_id": key})
            else:
                collection.replace_one({"_id": key}, before, upsert=True)


class StandInCollection:
    def __init__(self, sync: Any) -> None:
        self._sync = sync

    # -- reads -----------------------------------------------------------------------------------

    async def find_one(
        self, filter: Mapping[str, Any], projection: Any = None, *, session: Any = None
    ) -> Doc | None:
        found: Doc | None = self._sync.find_one(dict(filter), projection)
        return found

    def find(
        self,
        filter: Mapping[str, Any],
        projection: Any = None,
        *,
        sort: Sequence[tuple[str, int]] | None = None,
        skip: int = 0,
        limit: int = 0,
        session: Any = None,
    ) -> StandInCursor:
        cursor = self._sync.find(dict(filter), projection)
        if sort:
            cursor = cursor.sort(list(sort))
        return StandInCursor(cursor.skip(skip).limit(limit))

    async def count_documents(
        self, filter: Mapping[str, Any], *, session: Any = None, limit: int | None = None
    ) -> int:
        return int(self._sync.count_documents(dict(filter), **({} if limit is None else {"limit": limit})))

    async def aggregate(self, pipeline: Sequence[Mapping[str, Any]], *, session: Any = None) -> StandInCursor:
        return StandInCursor(iter(self._sync.aggregate([dict(stage) for stage in pipeline])))

    async def create_indexes(self, models: Sequence[IndexModel], **_options: Any) -> list[str]:
        names: list[str] = self._sync.create_indexes(list(models))
        return names

    async def index_information(self) -> dict[str, Any]:
        info: dict[str, Any] = self._sync.index_information()
        return info

    # -- writes (recorded for rollback when inside a transaction) ---------------------------------

    async def insert_one(self, document: Doc, *, session: StandInSession | None = None) -> Any:
        result = self._sync.insert_one(document)
        self._record(session, result.inserted_id, None)
        return result

    async def replace_one(
        self, filter: Mapping[str, Any], replacement: Doc, *, session: StandInSession | None = None
    ) -> Any:
        before = self._sync.find_one(dict(filter))
        result = self._sync.replace_one(dict(filter), replacement)
        if before is not None:
            self._record(session, before["_id"], before)
        return result

    async def update_one(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any],
        *,
        upsert: bool = False,
        session: StandInSession | None = None,
    ) -> Any:
        before = self._sync.find_one(dict(filter))
        result = self._sync.update_one(dict(filter), dict(update), upsert=upsert)
        if before is not None:
            self._record(session, before["_id"], before)
        elif result.upserted_id is not None:
            self._record(session, result.upserted_id, None)
        return result

    async def bulk_write(
        self, requests: Sequence[Any], *, ordered: bool = True, session: StandInSession | None = None
    ) -> None:
        """`UpdateOne` requests only (what the adapter sends), applied one by one."""
        for request in requests:
            if not isinstance(request, UpdateOne):
                raise NotImplementedError(f"the stand-in's bulk_write takes UpdateOne, not {request!r}")
            # the driver keeps what it was given as _filter, _doc (the update) and _upsert
            update = request._doc
            if not isinstance(update, Mapping):
                raise NotImplementedError("the stand-in's bulk_write takes no update pipelines")
            await self.update_one(request._filter, update, upsert=bool(request._upsert), session=session)

    def _record(self, session: StandInSession | None, key: Any, before: Doc | None) -> None:
        if session is not None and session.undo is not None:
            session.undo.append((self._sync, key, before))


class StandInCursor:
    """An async cursor over a mongomock cursor (or any iterator of documents)."""

    def __init__(self, documents: Any) -> None:
        self._documents = documents

    async def to_list(self, length: int | None = None) -> list[Doc]:
        out: list[Doc] = []
        for doc in self._documents:
            out.append(doc)
            if length is not None and len(out) >= length:
                break
        return out

    async def __aiter__(self) -> AsyncIterator[Doc]:
        for doc in self._documents:
            yield doc
