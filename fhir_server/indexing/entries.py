"""Typed search-index entries: plain values extracted from a resource at write time.

Each entry names its search parameter by code (`param`) and carries values already normalised, so
storage adapters store and compare them without FHIR knowledge. https://hl7.org/fhir/R4/search.html

- strings are folded (lower case, accents removed, whitespace collapsed) in `value`; `exact` keeps
  the original for `:exact`.
- dates are half-open instants [low, high) in microseconds since the Unix epoch, UTC; a date of any
  precision widens to its whole span (2026 -> [2026-01-01, 2027-01-01)); open Period ends use
  MIN_INSTANT / MAX_INSTANT.
- numbers and quantities carry the value and the half-open range implied by its precision; one from
  a Range carries the Range's ends instead, and its low end (else its high end) as value (is_range).
- references are split into type + id for local references; absolute/canonical ones keep `url`.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MIN_INSTANT = -(2**62)
MAX_INSTANT = 2**62

# What extraction writes, by version; stores record the version their entries were made with, and
# `fhir-server reindex` brings an older store's entries up to this one.
# 1: before versions were recorded. 2: numbers with a fraction or exponent indexed (request bodies
#    parse them as Decimal, which extraction skipped: `value-quantity=6.3` found nothing); MongoDB
#    entries from a Range marked `rg` (compared by their ends). 3: a versioned canonical (`url|1.2`)
#    also indexed as written, for searches naming the version; `_content` holds the narrative's
#    words too (search.html: "the entire content of the resource").
INDEX_VERSION = 3


class _Compact:
    """Pickles as (class, field values): half the cost of the default for slotted dataclasses, which
    matters when worker processes send millions of entries back to the importer."""

    __slots__: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return (type(self), tuple(getattr(self, name) for name in self.__slots__))


@dataclass(frozen=True, slots=True)
class TokenEntry(_Compact):
    param: str
    system: str | None
    code: str | None
    text: str | None = None  # folded display/text, for `:text`


@dataclass(frozen=True, slots=True)
class StringEntry(_Compact):
    param: str
    value: str  # folded
    exact: str  # as written


@dataclass(frozen=True, slots=True)
class DateEntry(_Compact):
    param: str
    low: int  # inclusive, µs since epoch UTC
    high: int  # exclusive


@dataclass(frozen=True, slots=True)
class NumberEntry(_Compact):
    param: str
    value: float
    low: float  # implicit precision range [low, high)
    high: float


def is_range(value: float, low: float, high: float) -> bool:
    """Is a number or quantity entry a Range? Its `low`/`high` are then the Range's ends as written
    (an absent end ±inf) and `value` is one of them; a single number's precision range lies strictly
    around its value. Searches compare a Range by its ends (search.html#number, as dates with
    Periods) and a single number by its value."""
    return not low < value < high


@dataclass(frozen=True, slots=True)
class QuantityEntry(_Compact):
    param: str
    value: float
    low: float
    high: float
    system: str | None
    code: str | None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class ReferenceEntry(_Compact):
    param: str
    target_type: str | None  # local references: "Patient"
    target_id: str | None  # local references: "123"
    url: str | None = None  # absolute or canonical references (version stripped)
    identifier_system: str | None = None  # Reference.identifier, for `:identifier`
    identifier_value: str | None = None


@dataclass(frozen=True, slots=True)
class UriEntry(_Compact):
    param: str
    value: str


@dataclass(frozen=True, slots=True)
class CompositeEntry(_Compact):
    """One combination of component values of a composite parameter (e.g. code-value-quantity)."""

    param: str
    components: tuple[IndexEntry, ...]


IndexEntry = (
    TokenEntry
    | StringEntry
    | DateEntry
    | NumberEntry
    | QuantityEntry
    | ReferenceEntry
    | UriEntry
    | CompositeEntry
)


# -- a compact wire form, for worker processes that send millions of entries back ------------------

_KINDS: tuple[type[IndexEntry], ...] = (
    TokenEntry,
    StringEntry,
    DateEntry,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    UriEntry,
    CompositeEntry,
)
_KIND_NUMBER = {kind: n for n, kind in enumerate(_KINDS)}
_COMPOSITE = _KIND_NUMBER[CompositeEntry]


def _flat(entry: IndexEntry) -> tuple[object, ...]:
    if type(entry) is CompositeEntry:
        return (_COMPOSITE, entry.param, tuple(_flat(part) for part in entry.components))
    return (_KIND_NUMBER[type(entry)], *[getattr(entry, name) for name in entry.__slots__])


def _built(flat: tuple[Any, ...]) -> IndexEntry:
    kind = _KINDS[flat[0]]
    if kind is CompositeEntry:
        return CompositeEntry(flat[1], tuple(_built(part) for part in flat[2]))
    built: IndexEntry = kind(*flat[1:])
    return built


def pack_entries(entries: Iterable[IndexEntry]) -> bytes:
    """Entries as one `marshal` blob of plain tuples: ~10x cheaper to send between processes than
    pickling the objects (values are only str, int, float and None)."""
    return marshal.dumps([_flat(entry) for entry in entries])


def unpack_entries(data: bytes) -> list[IndexEntry]:
    """The inverse of `pack_entries` (for data this same program packed)."""
    return [_built(flat) for flat in marshal.loads(data)]
