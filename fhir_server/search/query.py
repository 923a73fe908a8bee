"""Search queries and their answers as plain, adapter-neutral values. https://hl7.org/fhir/R4/search.html

The parser (`fhir_server.search.parse`) resolves every parameter against the registry, so a storage
adapter needs no FHIR knowledge: each `Clause` names the parameter code, the kind of index entry it
compares against (the `fhir_server.indexing.entries` classes) and typed values already normalised the
same way the entries were (folded strings, [low, high) instants, precision ranges).

Shape of a query: an AND-list of criteria; each `Clause` holds an OR-list of values. Chains and
reverse chains nest criteria evaluated against other resources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from fhir_server.storage.port import StoredResource

Prefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
PREFIXES: tuple[Prefix, ...] = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")

# Entry kinds a clause compares against (one per IndexEntry class), plus the resource-table columns.
Kind = Literal[
    "number",
    "date",
    "string",
    "token",
    "reference",
    "quantity",
    "uri",
    "composite",
    "id",  # _id: the resource's id
    "lastUpdated",  # _lastUpdated: the resource's last_updated instant
    "text",  # _text: folded substring of the narrative
    "content",  # _content: folded substring of the whole resource
]


@dataclass(frozen=True, slots=True)
class NumberValue:
    """A number with its implied precision range: `100` is [99.5, 100.5)."""

    prefix: Prefix
    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class DateValue:
    """A date of any precision as the half-open instant range it covers, µs since epoch UTC."""

    prefix: Prefix
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class QuantityValue:
    """`[prefix]number|system|code`: system None = any; code None = any unit."""

    prefix: Prefix
    value: float
    low: float
    high: float
    system: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class StringValue:
    """`value` is always folded; `exact` (for `:exact`) keeps the text as written."""

    value: str
    match: Literal["start", "exact", "contains"] = "start"
    exact: str | None = None


@dataclass(frozen=True, slots=True)
class TokenValue:
    """`code`, `system|code`, `|code`, `system|`.

    system: None = any system; "" = no system. code: None = any code. `match="text"` compares the
    folded `code` against the entry's display text (`:text`).
    """

    system: str | None
    code: str | None
    match: Literal["code", "text"] = "code"


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """A local reference (type + id, type None = any allowed target), an absolute/canonical url,
    or a `:identifier` match (identifier_system None = any system, "" = no system)."""

    target_type: str | None = None
    target_id: str | None = None
    url: str | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None


@dataclass(frozen=True, slots=True)
class UriValue:
    """`:above` / `:below` compare whole path segments (search.html#uri): `below=http://a/fhir`
    matches `http://a/fhir`, `http://a/fhir/...` and the canonical's versions `http://a/fhir|...`,
    not `http://a/fhirplace`; `above` matches the value and its segment ancestors (`ancestors`)."""

    value: str
    match: Literal["eq", "above", "below"] = "eq"

    def ancestors(self) -> list[str]:
        """The value and every url it lies below, each with and without its trailing `/`:
        `http://a/b/c` -> `http://a/b/c`, `http://a/b/`, `http://a/b`, `http://a/`, `http://a`, ..."""
        found = [self.value]
        scheme = self.value.find("://")
        first = scheme + 3 if scheme >= 0 else 1  # not inside `http://`
        for i in range(len(self.value) - 1, first - 1, -1):
            if self.value[i] == "/":
                found += [self.value[: i + 1], self.value[:i]]
        return list(dict.fromkeys(p for p in found if p))

    def below_prefix(self) -> str:
        """What a url below the value starts with: the value ending in one `/`."""
        return self.value.rstrip("/") + "/"

    def versions_prefix(self) -> str:
        """What a version of the value as a canonical starts with (search.html#uri: `:below` on
        `http://acme.com/some-profile` also matches `some-profile|1.0`, `|2.0`, ...)."""
        return (self.value.rstrip("/") or self.value) + "|"


@dataclass(frozen=True, slots=True)
class CompositeValue:
    """One `a$b` value: a typed value per component, in component order."""

    parts: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class MissingValue:
    """`:missing=true` (no entry for the parameter) or `:missing=false` (at least one)."""

    missing: bool


Value = (
    NumberValue
    | DateValue
    | QuantityValue
    | StringValue
    | TokenValue
    | ReferenceValue
    | UriValue
    | CompositeValue
    | MissingValue
)


@dataclass(frozen=True, slots=True)
class Clause:
    """Resources with an entry for `param` matching any of `values` (OR).

    `negate` (token `:not`): resources with no entry matching any of the values, including those
    without the parameter at all. `components` gives the kind of each part of a composite.
    """

    param: str
    kind: Kind
    values: tuple[Value, ...]
    negate: bool = False
    components: tuple[Kind, ...] = ()


@dataclass(frozen=True, slots=True)
class ChainClause:
    """`param:Type.inner=...`: a reference `param` resolves to a live resource of one of
    `target_types` that satisfies `inner` (which may chain again).

    `canonical_types`: those of `target_types` that a canonical url in `param` may name (empty
    when `param` holds literal references only); a canonical resolves to the resources of these
    types whose `url` parameter equals it (search.html#reference)."""

    param: str
    target_types: tuple[str, ...]
    inner: Criterion
    canonical_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HasClause:
    """`_has:Source:param:inner=...`: some live `source_type` resource whose reference `param`
    points at this resource satisfies `inner`. `canonical_types`: the searched types a canonical
    url in `param` may name, as in ChainClause (a resource of one is pointed at by its `url`)."""

    source_type: str
    param: str
    inner: Criterion
    canonical_types: tuple[str, ...] = ()


Criterion = Clause | ChainClause | HasClause


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str  # a search parameter code, or "_id" / "_lastUpdated"
    kind: Kind
    descending: bool = False


@dataclass(frozen=True, slots=True)
class CanonicalParam:
    """A reference parameter that may hold canonical urls (search.html#reference: "a Reference or
    canonical"): such a value refers to the live resources of `target_types` whose `url`
    parameter equals it (a versioned `url|1.2` through its url, to every version held)."""

    source_type: str
    param: str
    target_types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Include:
    """`_include=Source:param[:Target]` (or `_revinclude`). `param` None means `*` (every reference).

    `canonical`: the parameters followed that may hold canonical urls, with the types those name
    (of `target_type` only, when given); empty when every parameter followed is literal."""

    source_type: str | None
    param: str | None
    target_type: str | None = None
    iterate: bool = False
    canonical: tuple[CanonicalParam, ...] = ()


@dataclass(frozen=True, slots=True)
class TypeRule:
    """Granular access: a resource of `resource_type` passes only if it satisfies every clause of at
    least one group in `any_of` (e.g. Observation needs category=vital-signs)."""

    resource_type: str
    any_of: tuple[tuple[Criterion, ...], ...]


@dataclass(frozen=True, slots=True)
class AccessFilter:
    """What the caller may see, applied inside storage to matches, includes, chains and `_has`.

    Every field narrows (AND); None means no restriction by that field.
    - types: allowed resource types.
    - compartments: the resource must be in one of these Patient compartments ("Patient/1"); a
      Patient is in its own.
    - allowed_labels: a resource passes only if every `meta.security` code of `label_system` it
      carries is in this set of (system, code); a resource with none passes if `allow_unlabeled`.
    - extra: per-type rules (all rules of the resource's type must pass).
    - patient_criteria: the resource must be in the compartment of a live Patient meeting every one
      of these criteria (a Patient: itself), e.g. Patient.managingOrganization = the clinician's
      organisation — a set of compartments too large to list.
    - any_of: the resource must also pass at least one of these filters (a union, e.g. one per
      Consent grant, each with its own patient and labels). An adapter that cannot apply a field
      must refuse the query, never ignore the field.
    """

    types: frozenset[str] | None = None
    compartments: frozenset[str] | None = None
    allowed_labels: frozenset[tuple[str, str]] | None = None
    label_system: str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
    allow_unlabeled: bool = True
    extra: tuple[TypeRule, ...] = ()
    patient_criteria: tuple[Criterion, ...] = ()
    any_of: tuple[AccessFilter, ...] = ()


# "bounded", the default when the client does not ask: count the matches only up to
# `SearchQuery.total_cap` and report a total only when there are no more (counting hundreds of
# thousands of matches costs more than the page; `_total=accurate` always counts them all).
Total = Literal["none", "estimate", "accurate", "bounded"]


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A whole search. `resource_types` empty = system level (every type)."""

    resource_types: tuple[str, ...] = ()
    criteria: tuple[Criterion, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 20
    offset: int = 0
    total: Total = "bounded"
    total_cap: int = 1_000
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    compartment: str | None = None  # "Patient/123": only resources in that compartment
    access: AccessFilter | None = None
    # Continue strictly after this position: a `SearchPage.cursor` the same store gave for the same
    # search (opaque, sealed: storage/cursors.py). Pages then neither repeat nor skip a match when
    # others are created or deleted between requests. `offset` still numbers the page.
    after: str | None = None


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of answers: matches in order, then included resources (no duplicates)."""

    matches: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    total: int | None = None
    next_offset: int | None = None  # the offset of the next page, None on the last page
    cursor: str | None = None  # where the next page starts (with `next_offset`), for `after`
