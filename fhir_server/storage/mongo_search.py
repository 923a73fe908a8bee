"""Running a `SearchQuery` on MongoDB: lookups for chains and `_has`, one page, total, includes.

The filters come from fhir_server.storage.mongo_query (pure); this module does the I/O. Semantics
follow the SQLite adapter: a page of `count` matches in sort order (missing sort values last, then
creation order), `next_offset` when more follow, `total` counted only when the page cannot tell it,
and includes within the same access filter (at most MAX_INCLUDES, MAX_ITERATIONS rounds of :iterate).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from fhir_server.errors import BadRequest
from fhir_server.search.query import HasClause, Include, SearchPage, SearchQuery
from fhir_server.storage import mongo_query as mq
from fhir_server.storage.mongo_docs import to_stored
from fhir_server.storage.mongo_paging import after_filter
from fhir_server.storage.port import StoredResource

if TYPE_CHECKING:
    from fhir_server.storage.mongo import MongoStore

T = TypeVar("T")
Doc = dict[str, Any]
MAX_INCLUDES = 1000
MAX_ITERATIONS = 4


async def run_search(store: MongoStore, query: SearchQuery) -> SearchPage:
    resolved: dict[mq.Lookup, list[str]] = {}
    where = await _translated(store, resolved, lambda: mq.search_filter(query, resolved))
    order = mq.sort_order(query.sort)
    docs, has_next = await _page(store, where, order, query)
    total = await _total(store, where, query, len(docs), has_next)
    included: list[StoredResource] = []
    if docs and (query.includes or query.revincludes):
        included = await _included(store, query, [d["_id"] for d in docs], resolved)
    next_offset = query.offset + query.count if has_next else None
    position = [_dig(docs[-1], f) for f, _ in order] if has_next else None
    cursor = store.cursors.seal(query, position) if position is not None else None
    return SearchPage([to_stored(d) for d in docs], included, total, next_offset, cursor)


async def matches_any(store: MongoStore, query: SearchQuery, session: Any) -> bool:
    """Whether `query` matches any resource, read within `session` (a write's transaction)."""
    resolved: dict[mq.Lookup, list[str]] = {}
    where = await _translated(store, resolved, lambda: mq.search_filter(query, resolved))
    return await store.resources.find_one(where, {"_id": 1}, session=session) is not None


# -- translation with lookups ----------------------------------------------------------------------


async def _translated(store: MongoStore, resolved: dict[mq.Lookup, list[str]], build: Callable[[], T]) -> T:
    """Translate, answering each chain or `_has` the translation asks for (innermost first)."""
    while True:
        try:
            return build()
        except mq.Unresolved as missing:
            resolved[missing.lookup] = await _lookup(store, missing.lookup, resolved)


async def _lookup(store: MongoStore, lookup: mq.Lookup, resolved: dict[mq.Lookup, list[str]]) -> list[str]:
    """The keys a chain (live targets), `_has` (targets of live sources) or patient criteria resolve to.

    The answer is materialised: a chain on a broad inner criterion (`subject:Patient.gender=female`)
    fetches every matching target id; docs/mongodb.md notes this cost.
    """
    if isinstance(lookup.crit, HasClause):
        pipeline = await _translated(store, resolved, lambda: mq.has_source_pipeline(lookup, resolved))
        return await _distinct_refs(store, pipeline)
    if isinstance(lookup.crit, mq.CanonicalUrls):
        pipeline = await _translated(store, resolved, lambda: mq.canonical_urls_pipeline(lookup, resolved))
        return sorted(d["_id"] for d in await _aggregated(store, pipeline))
    where = await _translated(store, resolved, lambda: mq.chain_lookup_filter(lookup, resolved))
    return [d["_id"] for d in await store.resources.find(where, {"_id": 1}).to_list()]


async def _distinct_refs(store: MongoStore, pipeline: list[Doc]) -> list[str]:
    return sorted(f"{d['_id']['rt']}/{d['_id']['ri']}" for d in await _aggregated(store, pipeline))


async def _aggregated(store: MongoStore, pipeline: list[Doc]) -> list[Doc]:
    cursor = await store.resources.aggregate(pipeline)
    found: list[Doc] = await cursor.to_list()
    return found


# -- one page, and the total -----------------------------------------------------------------------


async def _page(store: MongoStore, where: Doc, order: mq.Order, query: SearchQuery) -> tuple[list[Doc], bool]:
    """`count` matches from `offset`, and whether more follow. Continues after the query's cursor,
    or else after the remembered key of the previous page when there is one (keyset), else skips
    (mongo_paging)."""
    if query.count <= 0:
        return [], False
    memo_key = ("search", where, order, query.count)
    after: Sequence[Any] | None = None
    if query.after is not None:
        after = store.cursors.open(query, query.after)
        if len(after) != len(order):  # sealed for this query, so only a change of this code does it
            raise BadRequest("The _cursor value was made by another version of this server; start again")
    else:
        after = store.search_pages.get(memo_key, query.offset)
    docs = await store.resources.find(
        {"$and": [where, after_filter(order, after)]} if after else where,
        mq.page_projection(order),
        sort=order,
        skip=0 if after else query.offset,
        limit=query.count + 1,
    ).to_list(query.count + 1)
    has_next = len(docs) > query.count
    docs = docs[: query.count]
    if has_next:
        store.search_pages.put(memo_key, query.offset + query.count, [_dig(docs[-1], f) for f, _ in order])
    return docs, has_next


def _dig(doc: Doc, path: str) -> Any:
    """The value at a dotted path, None when absent (as MongoDB compares a missing field)."""
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


async def _total(store: MongoStore, where: Doc, query: SearchQuery, found: int, has_next: bool) -> int | None:
    if query.total == "none" and query.count > 0:
        return None
    if query.count > 0 and not has_next and (found or query.offset == 0):
        return query.offset + found  # the last page tells the total without counting
    if query.total == "bounded":  # stop counting past the cap: a total beyond it is not reported
        counted = await store.resources.count_documents(where, limit=query.total_cap + 1)
        return counted if counted <= query.total_cap else None
    return await store.resources.count_documents(where)


# -- _include / _revinclude ------------------------------------------------------------------------


async def _included(
    store: MongoStore, query: SearchQuery, matched: list[str], resolved: dict[mq.Lookup, list[str]]
) -> list[StoredResource]:
    """Resources the page includes or that refer to it, within the access filter; no duplicates."""
    seen = set(matched)
    added: list[Doc] = []
    frontier = matched
    tagged = [(i, False) for i in query.includes] + [(i, True) for i in query.revincludes]
    for round_ in range(MAX_ITERATIONS + 1):
        wanted = [(i, reverse) for i, reverse in tagged if round_ == 0 or i.iterate]
        if not wanted or not frontier:
            break
        new: list[Doc] = []
        for include, reverse in wanted:
            step = _revinclude_step if reverse else _include_step
            for doc in await step(store, query, include, frontier, resolved):
                if doc["_id"] not in seen and len(added) + len(new) < MAX_INCLUDES:
                    seen.add(doc["_id"])
                    new.append(doc)
        added += new
        frontier = [d["_id"] for d in new]
    return [to_stored(d) for d in added]


async def _include_step(
    store: MongoStore,
    query: SearchQuery,
    include: Include,
    sources: list[str],
    resolved: dict[mq.Lookup, list[str]],
) -> list[Doc]:
    targets = await _distinct_refs(store, mq.include_pipeline(include, sources))
    found = [
        (d["_id"]["t"], d["_id"]["p"], d["_id"]["u"]) for d in await _canonicals_in(store, include, sources)
    ]
    named = mq.named_by_canonicals(include.canonical, found)
    if not targets and named == mq.FALSE:
        return []
    access = await _translated(store, resolved, lambda: mq.access_filter(query.access, resolved))
    refs = mq.any_of([{"_id": {"$in": targets}} if targets else mq.FALSE, named])
    return await _found(store, mq.all_of([refs, mq.live_of(()), access]))


async def _canonicals_in(store: MongoStore, include: Include, sources: list[str]) -> list[Doc]:
    """The canonicals in the sources' parameters that may hold them (none asked for otherwise)."""
    if not include.canonical:
        return []
    return await _aggregated(store, mq.canonical_include_pipeline(include, sources))


async def _revinclude_step(
    store: MongoStore,
    query: SearchQuery,
    include: Include,
    targets: list[str],
    resolved: dict[mq.Lookup, list[str]],
) -> list[Doc]:
    urls: list[tuple[str, str]] = []
    if include.canonical:  # the targets' urls, which canonicals name them by
        found = await _aggregated(store, mq.target_urls_pipeline(include, targets))
        urls = sorted((d["_id"]["t"], d["_id"]["v"]) for d in found)

    def build() -> Doc:
        return mq.revinclude_filter(include, targets, query.access, resolved, urls)

    return await _found(store, await _translated(store, resolved, build))


async def _found(store: MongoStore, where: Doc) -> list[Doc]:
    if where == mq.FALSE:
        return []
    order: Sequence[tuple[str, int]] = mq.TIE_BREAK
    return await store.resources.find(where, mq.page_projection(mq.TIE_BREAK), sort=order).to_list()
