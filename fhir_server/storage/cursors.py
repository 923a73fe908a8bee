"""Sealed paging cursors: where the next page of a search starts, opaque to everyone but the store.

A store answers a page with the sort-key values of its last match and that match's internal row
number (`SearchPage.cursor`); the next request hands them back (`SearchQuery.after`) and the store
continues strictly after them. Those values can be patient data the request never held (a `_sort`
by identifier puts an NHS number there) and a row number counts every patient's resources, so
clients get them sealed: AES-GCM under a key the store keeps in its own database (shared by every
worker process and machine that serves it), with the search's own criteria, order and access
filter as associated data. A cursor therefore opens only for the search that made it and for the
same caller's access; anything else, tampered or truncated, is a 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import os
from collections.abc import Sequence
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fhir_server.errors import BadRequest
from fhir_server.search.query import SearchQuery

KEY_BYTES = 32
_NONCE = 12
Position = tuple[Any, ...]  # sort-key values (str, int, float, None), then the tie-break


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


class CursorSealer:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, query: SearchQuery, position: Sequence[Any]) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, orjson.dumps(list(position)), _binding(query))
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, query: SearchQuery, token: str) -> Position:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _binding(query))
            values = orjson.loads(plain)
        except (ValueError, binascii.Error, InvalidTag):
            raise BadRequest(
                "The _cursor value does not belong to this search (its criteria, order or your access "
                "changed, or it was altered); follow the Bundle's links, or start again from the first page"
            ) from None
        return tuple(values)


def _binding(query: SearchQuery) -> bytes:
    """What a cursor is valid for: the matches and their order, as this caller may see them."""
    identity = (query.resource_types, query.criteria, query.sort, query.compartment, query.access)
    return hashlib.sha256(orjson.dumps(_canonical(identity))).digest()


def _canonical(value: Any) -> Any:
    """A plain JSON form, the same in every process (sets sorted: their order follows hash seeds)."""
    names = _field_names(type(value))
    if names is not None:
        return [type(value).__name__, *[[name, _canonical(getattr(value, name))] for name in names]]
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((_canonical(item) for item in value), key=orjson.dumps)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)  # Decimal, datetime: their repr is stable


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(kind: type) -> tuple[str, ...] | None:
    """A dataclass type's field names (None for any other type), looked up once per type:
    `dataclasses.fields` took most of the 12 us a page's cursor cost."""
    try:
        return _FIELD_NAMES[kind]
    except KeyError:
        names = tuple(f.name for f in dataclasses.fields(kind)) if dataclasses.is_dataclass(kind) else None
        _FIELD_NAMES[kind] = names
        return names
