"""Keyset paging.

Search pages that follow a `next` link continue after the cursor it carries (`SearchQuery.after`,
see fhir_server/search/paging.py). Requests without one (history, or a client that builds
`_offset` itself) page by offset (`SearchQuery.offset`, `HistoryQuery.offset`). A large
`skip` makes MongoDB walk and discard every earlier document, and pages shift when data changes
between requests. So when a page is served, the adapter remembers the sort key of its last document
under (query, next offset); the request for that next page then continues *after* that key with an
index range instead of skipping. A request whose key is not remembered (another process served the
previous page, or the memo evicted it) falls back to `skip`, which gives the same answer on data
that has not changed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

Order = Sequence[tuple[str, int]]  # (field, 1 ascending | -1 descending); the last field is unique


class KeysetMemo:
    """A bounded LRU of (query, offset) -> sort key of the document just before that offset."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._keys: OrderedDict[tuple[str, int], list[Any]] = OrderedDict()

    def get(self, query: object, offset: int) -> list[Any] | None:
        if offset <= 0:
            return None
        slot = (repr(query), offset)
        found = self._keys.get(slot)
        if found is not None:
            self._keys.move_to_end(slot)
        return found

    def put(self, query: object, offset: int, key: list[Any]) -> None:
        self._keys[(repr(query), offset)] = key
        self._keys.move_to_end((repr(query), offset))
        while len(self._keys) > self._capacity:
            self._keys.popitem(last=False)


def after_filter(order: Order, key: Sequence[Any]) -> dict[str, Any]:
    """Documents strictly after `key` in `order`: (a > ka) or (a = ka and b > kb) or ...

    MongoDB uses the index on the order's fields for each branch, so a deep page costs what the
    first page costs. A missing field sorts as null, below every value; comparison operators never
    match null, so "after" names it explicitly.
    """
    branches: list[dict[str, Any]] = []
    for i, (field, direction) in enumerate(order):
        beyond = _beyond(field, direction, key[i])
        if beyond is not None:
            branches.append({**{order[j][0]: key[j] for j in range(i)}, **beyond})
    if not branches:
        return {"_id": {"$in": []}}
    return branches[0] if len(branches) == 1 else {"$or": branches}


def _beyond(field: str, direction: int, value: Any) -> dict[str, Any] | None:
    """Values of `field` that sort strictly after `value` (None when nothing can)."""
    if direction > 0:
        return {field: {"$ne": None}} if value is None else {field: {"$gt": value}}
    if value is None:
        return None  # descending, nulls come last: nothing sorts after one
    return {"$or": [{field: {"$lt": value}}, {field: None}]}
