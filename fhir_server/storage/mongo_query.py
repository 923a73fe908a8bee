"""`SearchQuery` -> MongoDB filter and sort, as plain values. https://hl7.org/fhir/R4/search.html

Pure: every function returns a filter document that tests compare by equality. The semantics mirror
the SQLite translation (fhir_server.storage.sqlite_index) clause for clause; the layout of `ix`
entries is in fhir_server.storage.mongo_docs.

Chains and `_has` need the ids of other resources first. Translation asks for them by raising
`Unresolved(lookup)`; the caller (mongo_search) runs the lookup, adds its answer to `resolved` and
translates again. That keeps this module free of I/O and lets tests supply the answers as data.

Index use: each value becomes one `$elemMatch` on `ix` led by the parameter code, so the compound
multikey indexes `{type, ix.p, ...}` bound the scan, and an OR of values is a top-level `$or` of
`$elemMatch`es (one index scan per branch). Strings match their folded form with an anchored
prefix regex (index bounds, no scan). Only `:contains`, token `:text` and `_text`/`_content` use an
unanchored regex, which scans the candidate entries: the spec asks for substring matching there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.indexing.normalize import search_words
from fhir_server.search.query import (
    AccessFilter,
    CanonicalParam,
    ChainClause,
    Clause,
    CompositeValue,
    Criterion,
    DateValue,
    HasClause,
    Include,
    Kind,
    MissingValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)

Doc = dict[str, Any]
Order = list[tuple[str, int]]
TRUE: Doc = {}
FALSE: Doc = {"_id": {"$in": []}}  # matches nothing, without a scan
TIE_BREAK: Order = [("cs", 1), ("_id", 1)]  # creation order, as the SQLite adapter's rowid


@dataclass(frozen=True, slots=True)
class PatientsMeeting:
    """The live Patients meeting every criterion (`AccessFilter.patient_criteria`, e.g. the patients
    of a clinician's organisation). Not itself access-narrowed, as in the SQLite adapter."""

    criteria: tuple[Criterion, ...]


@dataclass(frozen=True, slots=True)
class CanonicalUrls:
    """The urls through which a chain or `_has` meets canonicals (search.html#reference). Chain:
    the `url` values of its live targets of `crit.canonical_types` satisfying `crit.inner`. Has:
    the canonicals in `crit.param` of its live sources satisfying `crit.inner`."""

    crit: ChainClause | HasClause


@dataclass(frozen=True, slots=True)
class Lookup:
    """A set of resource keys ("Type/id") that translation needs from the database first.

    Chain: the live targets of `crit.target_types` satisfying `crit.inner`. Has: the resources that
    live `crit.source_type` resources satisfying `crit.inner` refer to through `crit.param`.
    Either way narrowed by `access`, which is part of the key because access rules are translated
    without it. PatientsMeeting: those patients (access is None). CanonicalUrls: urls, not keys.
    """

    crit: ChainClause | HasClause | PatientsMeeting | CanonicalUrls
    access: AccessFilter | None


class Unresolved(Exception):
    def __init__(self, lookup: Lookup) -> None:
        super().__init__(f"needs {lookup.crit!r}")
        self.lookup = lookup


Resolved = Mapping[Lookup, Sequence[str]]


# -- the whole query ---------------------------------------------------------------------------------


def search_filter(query: SearchQuery, resolved: Resolved) -> Doc:
    """Live resources of the query's types, in its compartment, meeting every criterion and access."""
    parts: list[Doc] = [live_of(query.resource_types)]
    if query.compartment is not None:
        parts.append({"compartments": query.compartment})
    parts += [criterion_filter(c, query.access, resolved) for c in query.criteria]
    parts.append(access_filter(query.access, resolved))
    return all_of(parts)


def live_of(types: Sequence[str]) -> Doc:
    """Not deleted, and of one of `types` (any type when empty)."""
    if not types:
        return {"deleted": False}
    return {"type": one_of(types), "deleted": False}


def one_of(values: Sequence[Any]) -> Any:
    """A condition on a field: equal to the one value, or `$in` the several."""
    return values[0] if len(values) == 1 else {"$in": list(values)}


def all_of(parts: Sequence[Doc]) -> Doc:
    kept = [p for p in parts if p != TRUE]
    if FALSE in kept:
        return FALSE
    if not kept:
        return TRUE
    return kept[0] if len(kept) == 1 else {"$and": kept}


def any_of(parts: Sequence[Doc]) -> Doc:
    kept = [p for p in parts if p != FALSE]
    if TRUE in kept:
        return TRUE
    if not kept:
        return FALSE
    return kept[0] if len(kept) == 1 else {"$or": kept}


def negation(part: Doc) -> Doc:
    if part == TRUE:
        return FALSE
    return TRUE if part == FALSE else {"$nor": [part]}


# -- criteria --------------------------------------------------------------------------------------


def criterion_filter(crit: Criterion, access: AccessFilter | None, resolved: Resolved) -> Doc:
    if isinstance(crit, ChainClause):
        return chain_filter(crit, _answer(Lookup(crit, access), resolved), _urls(crit, access, resolved))
    if isinstance(crit, HasClause):
        urls = _urls(crit, access, resolved)
        return has_filter(_answer(Lookup(crit, access), resolved), crit.canonical_types, urls)
    if crit.kind in ("id", "lastUpdated", "text", "content"):
        return column_filter(crit)
    return clause_filter(crit)


def _answer(lookup: Lookup, resolved: Resolved) -> Sequence[str]:
    if lookup not in resolved:
        raise Unresolved(lookup)
    return resolved[lookup]


def _urls(crit: ChainClause | HasClause, access: AccessFilter | None, resolved: Resolved) -> Sequence[str]:
    """The urls a chain or `_has` meets canonicals through; none asked for when its parameter
    holds literal references only."""
    return _answer(Lookup(CanonicalUrls(crit), access), resolved) if crit.canonical_types else ()


def clause_filter(clause: Clause) -> Doc:
    """A clause on index entries: any value matches (OR); `negate` keeps those where none does."""
    missing = [x for x in clause.values if isinstance(x, MissingValue)]
    if missing:
        return {"ix.p": {"$ne": clause.param}} if missing[0].missing else {"ix.p": clause.param}
    found = any_of([_entry_match(clause, value) for value in clause.values])
    return negation(found) if clause.negate else found


def _entry_match(clause: Clause, value: Value) -> Doc:
    if isinstance(value, CompositeValue):
        cond = all_of(
            [
                prefixed(value_filter(kind, part), f"c{i}.")
                for i, (kind, part) in enumerate(zip(clause.components, value.parts, strict=True))
            ]
        )
    else:
        cond = value_filter(clause.kind, value)
    return elem_match({"p": clause.param}, cond)


def elem_match(head: Doc, cond: Doc) -> Doc:
    """`ix` has one entry matching `head` and `cond` together."""
    if cond == FALSE:
        return FALSE
    return {
        "ix": {"$elemMatch": {**head, **cond} if head.keys().isdisjoint(cond) else {**head, "$and": [cond]}}
    }


def prefixed(cond: Doc, prefix: str) -> Doc:
    """`cond` on the fields of a composite component stored under `prefix` (e.g. "c0.")."""
    out: Doc = {}
    for key, value in cond.items():
        if key in ("$and", "$or", "$nor"):
            out[key] = [prefixed(part, prefix) for part in value]
        else:
            out[prefix + key] = value
    return out


# -- one value against one entry's fields ------------------------------------------------------------


def value_filter(kind: Kind, value: Value) -> Doc:
    """A condition on the fields of one `ix` entry (see mongo_docs.entry_parts) for one value."""
    if isinstance(value, DateValue):
        return range_filter(value.prefix, "lo", "hi", value.low, value.high)
    if isinstance(value, QuantityValue):
        return quantity_filter(value)
    if isinstance(value, NumberValue):
        return number_filter(value.prefix, value.value, value.low, value.high)
    if isinstance(value, StringValue):
        return string_filter(value)
    if isinstance(value, TokenValue):
        return token_filter(value)
    if isinstance(value, ReferenceValue):
        return reference_filter(value)
    if isinstance(value, UriValue):
        return uri_filter(value)
    raise TypeError(f"no condition for {kind} value {value!r}")


def range_filter(prefix: str, lo: str, hi: str, s_low: int, s_high: int) -> Doc:
    """The spec's range comparisons: entry [lo, hi) against the search range [s_low, s_high)."""
    # `within` is eq: the search range contains the entry's. The redundant bound `lo < s_high`
    # keeps the index scan on `lo` bounded on both sides.
    within = {lo: {"$gte": s_low, "$lt": s_high}, hi: {"$lte": s_high}}
    table: dict[str, Doc] = {
        "eq": within,
        "ne": {"$nor": [within]},
        "gt": {hi: {"$gt": s_high}},
        "lt": {lo: {"$lt": s_low}},
        "ge": {"$or": [{hi: {"$gt": s_high}}, within]},
        "le": {"$or": [{lo: {"$lt": s_low}}, within]},
        "sa": {lo: {"$gte": s_high}},
        "eb": {lo: {"$lt": s_low}, hi: {"$lte": s_low}},
        "ap": {lo: {"$lt": s_high}, hi: {"$gt": s_low}},
    }
    return table[prefix]


def number_filter(prefix: str, value: float, low: float, high: float) -> Doc:
    """A number (or quantity) entry against a search value: a single number by `point_filter`, an
    entry from a Range (marked `rg`, see mongo_docs.entry_parts) by `span_filter`."""
    return {
        "$or": [
            {"rg": {"$ne": True}, **point_filter(prefix, "v", value, low, high)},
            {"rg": True, **span_filter(prefix, value, low, high)},
        ]
    }


def point_filter(prefix: str, field: str, value: float, low: float, high: float) -> Doc:
    """eq/ne/ap use the precision range of the search value; the others compare with the value."""
    inside = {field: {"$gte": low, "$lt": high}}
    table: dict[str, Doc] = {
        "eq": inside,
        "ne": {"$nor": [inside]},
        "gt": {field: {"$gt": value}},
        "sa": {field: {"$gt": value}},
        "lt": {field: {"$lt": value}},
        "eb": {field: {"$lt": value}},
        "ge": {field: {"$gte": value}},
        "le": {field: {"$lte": value}},
        "ap": {field: {"$gte": low, "$lte": high}},
    }
    return table[prefix]


def span_filter(prefix: str, value: float, low: float, high: float) -> Doc:
    """A Range [lo, hi] (ends included) under the spec's range rules, as the SQLite adapter's
    `_span_sql`: eq = the search value's precision range contains it; gt/lt/ge/le/sa/eb compare it
    with the value itself; ap = it overlaps the `ap` range."""
    within = {"lo": {"$gte": low}, "hi": {"$lt": high}}
    table: dict[str, Doc] = {
        "eq": within,
        "ne": {"$nor": [within]},
        "gt": {"hi": {"$gt": value}},
        "lt": {"lo": {"$lt": value}},
        "ge": {"$or": [{"hi": {"$gte": value}}, within]},
        "le": {"$or": [{"lo": {"$lte": value}}, within]},
        "sa": {"lo": {"$gt": value}},
        "eb": {"hi": {"$lt": value}},
        "ap": {"lo": {"$lte": high}, "hi": {"$gte": low}},
    }
    return table[prefix]


def quantity_filter(value: QuantityValue) -> Doc:
    parts = [number_filter(value.prefix, value.value, value.low, value.high)]
    if value.system is not None:
        parts.append({"s": value.system})
    if value.code is not None and value.system is not None:
        parts.append({"c": value.code})
    elif value.code is not None:  # no system: the code may be a coded unit or the human unit
        parts.append({"$or": [{"c": value.code}, {"un": value.code}]})
    return _merged(parts)


def string_filter(value: StringValue) -> Doc:
    if value.match == "exact":
        return {"v": value.value, "e": value.exact if value.exact is not None else value.value}
    if value.match == "contains":
        return {"v": {"$regex": re.escape(value.value)}}  # unanchored: scans this parameter's entries
    return {"v": {"$regex": "^" + re.escape(value.value)}}


def token_filter(value: TokenValue) -> Doc:
    if value.match == "text":
        return {"x": {"$regex": re.escape(value.code or "")}}  # substring of the folded display
    cond: Doc = {}
    if value.code is not None:
        cond["c"] = value.code
    if value.system == "":
        cond["s"] = None  # no system: null or absent
    elif value.system is not None:
        cond["s"] = value.system
    return cond


def reference_filter(value: ReferenceValue) -> Doc:
    if value.identifier_value is not None:
        cond: Doc = {"iv": value.identifier_value}
        if value.identifier_system is not None:  # "" (`|value`): no system, null or absent
            cond["is"] = value.identifier_system or None
        return cond
    if value.url is not None:
        return {"u": value.url}
    if value.target_type is not None:
        return {"rt": value.target_type, "ri": value.target_id}
    return {"ri": value.target_id}


def uri_filter(value: UriValue) -> Doc:
    """Whole path segments for `:below` / `:above` (UriValue), as the SQLite adapter."""
    if value.match == "below":
        below = [
            {"v": {"$regex": "^" + re.escape(p)}} for p in (value.below_prefix(), value.versions_prefix())
        ]
        return {"$or": [{"v": value.value.rstrip("/") or value.value}, *below]}
    if value.match == "above":
        # The value's segment ancestors: an equality lookup each, which uses the index.
        return {"v": {"$in": value.ancestors()}}
    return {"v": value.value}


def _merged(parts: Sequence[Doc]) -> Doc:
    """AND of conditions on one entry: one document when their keys differ, `$and` otherwise."""
    out: Doc = {}
    for part in parts:
        if not out.keys().isdisjoint(part):
            return {"$and": list(parts)}
        out.update(part)
    return out


# -- parameters answered by the resource document itself ---------------------------------------------


def column_filter(clause: Clause) -> Doc:
    """`_id`, `_lastUpdated` from the resource document; `_text`/`_content` from their word lists."""
    missing = [x for x in clause.values if isinstance(x, MissingValue)]
    if missing:
        return FALSE if missing[0].missing else TRUE  # every resource has an id and lastUpdated
    if clause.kind == "id":
        ids = [x.code for x in clause.values if isinstance(x, TokenValue)]
        return {"id": ids[0]} if len(ids) == 1 else {"id": {"$in": ids}}
    if clause.kind == "lastUpdated":
        return any_of([last_updated_filter(x) for x in clause.values if isinstance(x, DateValue)])
    return words_filter(clause)


def words_filter(clause: Clause) -> Doc:
    """`_text`/`_content`: each word of a value begins a word of the stored, folded word list (a
    string entry of the same name). An unanchored regex: it scans those entries of the candidates."""
    options = []
    for value in clause.values:
        words = search_words(value.value) if isinstance(value, StringValue) else []
        starts = [{"v": {"$regex": "(?:^| )" + re.escape(w)}} for w in words]
        options.append(elem_match({"p": clause.param}, all_of(starts)))
    return any_of(options)


def last_updated_filter(value: DateValue) -> Doc:
    """`_lastUpdated` as the one-microsecond range [t, t + 1) under `range_filter`'s rules, solved for
    the integer t so each comparison is a plain bound on the indexed `last_updated`."""
    low, high = value.low, value.high
    field = "last_updated"
    table: dict[str, Doc] = {
        "eq": {field: {"$gte": low, "$lt": high}},
        "ne": {"$nor": [{field: {"$gte": low, "$lt": high}}]},
        "gt": {field: {"$gte": high}},  # t + 1 > high
        "lt": {field: {"$lt": low}},
        "ge": {field: {"$gte": low}},  # t + 1 > high, or low <= t < high
        "le": {field: {"$lt": high}},  # t < low, or low <= t < high
        "sa": {field: {"$gte": high}},
        "eb": {field: {"$lt": low}},  # t < low and t + 1 <= low
        "ap": {field: {"$gte": low, "$lt": high}},  # t < high and t + 1 > low
    }
    return table[value.prefix]


# -- chains and _has -------------------------------------------------------------------------------


def chain_filter(chain: ChainClause, targets: Sequence[str], urls: Sequence[str] = ()) -> Doc:
    """`chain.param` refers to one of `targets` ("Type/id", already narrowed and live), or names
    by canonical one of `urls` (those of its live, narrowed targets of `chain.canonical_types`)."""
    return any_of([references_to(chain.param, targets), canonicals_to(chain.param, urls)])


def canonicals_to(param: str, urls: Sequence[str]) -> Doc:
    """An entry of `param` is a canonical (a url alone, mongo_docs: no `rt`, no `ri`) with one of
    `urls`; a versioned `url|1.2`, also indexed as `url`, is met through the plain one."""
    if not urls:
        return FALSE
    return elem_match({"p": param}, {"rt": None, "ri": None, "u": one_of(urls)})


def with_url(types: Sequence[str], urls: Sequence[str]) -> Doc:
    """Resources of `types` whose `url` parameter is one of `urls`: what canonicals name."""
    if not types or not urls:
        return FALSE
    return all_of([{"type": {"$in": list(types)}}, elem_match({"p": "url"}, {"v": one_of(urls)})])


def references_to(param: str | None, targets: Sequence[str]) -> Doc:
    """An entry of `param` (any reference when None) refers to one of `targets` ("Type/id")."""
    by_type: dict[str, list[str]] = {}
    for key in targets:
        rtype, rid = key.split("/", 1)
        by_type.setdefault(rtype, []).append(rid)
    if not by_type:
        return FALSE
    refs = [{"rt": t, "ri": one_of(ids)} for t, ids in sorted(by_type.items())]
    return elem_match({"p": param} if param is not None else {}, refs[0] if len(refs) == 1 else {"$or": refs})


def has_filter(
    referenced: Sequence[str], canonical_types: Sequence[str] = (), urls: Sequence[str] = ()
) -> Doc:
    """The resource is one of those the `_has` sources refer to, or one of `canonical_types`
    with a `url` they name by canonical."""
    named = with_url(canonical_types, urls)
    if not referenced:
        return named
    return any_of([{"_id": {"$in": sorted(set(referenced))}}, named])


def chain_lookup_filter(lookup: Lookup, resolved: Resolved) -> Doc:
    """Where a lookup searches: live targets (chain) or live sources (`_has`) meeting the inner
    criterion and the access filter; or the live patients meeting the access criteria."""
    crit = lookup.crit
    if isinstance(crit, PatientsMeeting):
        return all_of([live_of(("Patient",)), *(criterion_filter(c, None, resolved) for c in crit.criteria)])
    if isinstance(crit, CanonicalUrls):  # a chain's targets that canonicals may name; a `_has`'s sources
        crit = crit.crit
        types = crit.canonical_types if isinstance(crit, ChainClause) else (crit.source_type,)
    else:
        types = crit.target_types if isinstance(crit, ChainClause) else (crit.source_type,)
    return all_of(
        [
            live_of(types),
            criterion_filter(crit.inner, lookup.access, resolved),
            access_filter(lookup.access, resolved),
        ]
    )


def has_source_pipeline(lookup: Lookup, resolved: Resolved) -> list[Doc]:
    """The distinct local targets of the `_has` sources' `param` references."""
    assert isinstance(lookup.crit, HasClause)
    return [
        {"$match": chain_lookup_filter(lookup, resolved)},
        {"$unwind": "$ix"},
        {"$match": {"ix.p": lookup.crit.param, "ix.ri": {"$ne": None}, "ix.rt": {"$ne": None}}},
        {"$group": {"_id": {"rt": "$ix.rt", "ri": "$ix.ri"}}},
    ]


def canonical_urls_pipeline(lookup: Lookup, resolved: Resolved) -> list[Doc]:
    """The distinct urls of a CanonicalUrls lookup: a chain's targets' `url` values, or the
    canonicals in a `_has`'s sources' parameter."""
    assert isinstance(lookup.crit, CanonicalUrls)
    crit = lookup.crit.crit
    if isinstance(crit, ChainClause):
        entries: Doc = {"ix.p": "url", "ix.k": "u"}
        value = "$ix.v"
    else:
        entries = {"ix.p": crit.param, "ix.rt": None, "ix.ri": None, "ix.u": {"$ne": None}}
        value = "$ix.u"
    return [
        {"$match": chain_lookup_filter(lookup, resolved)},
        {"$unwind": "$ix"},
        {"$match": entries},
        {"$group": {"_id": value}},
    ]


# -- _include / _revinclude -----------------------------------------------------------------------


def include_pipeline(include: Include, sources: Sequence[str]) -> list[Doc]:
    """The distinct local targets of the `sources`' references through `include.param` (every
    reference for `*`, or when no source type names the parameter), of `include.target_type`."""
    head: Doc = {"_id": {"$in": list(sources)}}
    if include.source_type is not None:
        head["type"] = include.source_type
    ref: Doc = {"ix.rt": {"$ne": None}, "ix.ri": {"$ne": None}}
    if include.param is not None and include.source_type is not None:
        ref["ix.p"] = include.param
    if include.target_type is not None:
        ref["ix.rt"] = include.target_type
    return [
        {"$match": head},
        {"$unwind": "$ix"},
        {"$match": ref},
        {"$group": {"_id": {"rt": "$ix.rt", "ri": "$ix.ri"}}},
    ]


def canonical_include_pipeline(include: Include, sources: Sequence[str]) -> list[Doc]:
    """The distinct (type, parameter, url) of the canonicals in the `sources`' parameters of
    `include.canonical` (to be resolved by `named_by_canonicals`)."""
    source_types = sorted({c.source_type for c in include.canonical})
    params = sorted({c.param for c in include.canonical})
    return [
        {"$match": {"_id": {"$in": list(sources)}, "type": {"$in": source_types}}},
        {"$unwind": "$ix"},
        {"$match": {"ix.p": {"$in": params}, "ix.rt": None, "ix.ri": None, "ix.u": {"$ne": None}}},
        {"$group": {"_id": {"t": "$type", "p": "$ix.p", "u": "$ix.u"}}},
    ]


def named_by_canonicals(params: Sequence[CanonicalParam], found: Sequence[tuple[str, str, str]]) -> Doc:
    """Resources that the canonicals `found` ((source type, parameter, url)) name: those of their
    parameter's target types (`params`) whose `url` is theirs."""
    targets = {(c.source_type, c.param): c.target_types for c in params}
    urls: dict[tuple[str, ...], set[str]] = {}
    for source_type, param, url in found:
        types = targets.get((source_type, param))
        if types:
            urls.setdefault(types, set()).add(url)
    return any_of([with_url(types, sorted(named)) for types, named in sorted(urls.items())])


def target_urls_pipeline(include: Include, targets: Sequence[str]) -> list[Doc]:
    """The distinct (type, url) of the `targets` that the canonicals of `include.canonical` may name."""
    types = sorted({t for c in include.canonical for t in c.target_types})
    return [
        {"$match": {"_id": {"$in": list(targets)}, "type": {"$in": types}}},
        {"$unwind": "$ix"},
        {"$match": {"ix.p": "url", "ix.k": "u"}},
        {"$group": {"_id": {"t": "$type", "v": "$ix.v"}}},
    ]


def naming_canonicals(params: Sequence[CanonicalParam], urls: Sequence[tuple[str, str]]) -> Doc:
    """Resources whose parameter of `params` names by canonical one of `urls` ((type, url)) of a
    type that parameter's canonicals may name."""
    parts = []
    for c in params:
        named = sorted({url for t, url in urls if t in c.target_types})
        if named:
            parts.append(all_of([{"type": c.source_type}, canonicals_to(c.param, named)]))
    return any_of(parts)


def revinclude_filter(
    include: Include,
    targets: Sequence[str],
    access: AccessFilter | None,
    resolved: Resolved,
    urls: Sequence[tuple[str, str]] = (),
) -> Doc:
    """Live resources of `include.source_type` whose `include.param` (any reference for `*`) refers
    to one of `targets` (those of `include.target_type` only, when given), or names by canonical
    one of the targets' `urls` ((type, url): target_urls_pipeline), within access."""
    if include.target_type is not None:
        targets = [t for t in targets if t.startswith(include.target_type + "/")]
    param = include.param if include.source_type is not None else None
    return all_of(
        [
            live_of((include.source_type,) if include.source_type else ()),
            any_of([references_to(param, targets), naming_canonicals(include.canonical, urls)]),
            access_filter(access, resolved),
        ]
    )


# -- access ----------------------------------------------------------------------------------------


def access_filter(access: AccessFilter | None, resolved: Resolved) -> Doc:
    """What the caller may see, as a filter on resource documents (TRUE when unrestricted)."""
    if access is None:
        return TRUE
    parts: list[Doc] = []
    if access.types is not None:
        parts.append({"type": {"$in": sorted(access.types)}} if access.types else FALSE)
    if access.compartments is not None:
        # A Patient's own key is in its `compartments` (mongo_docs), so "a Patient is in its own".
        parts.append({"compartments": {"$in": sorted(access.compartments)}} if access.compartments else FALSE)
    if access.allowed_labels is not None:
        parts.append(labels_filter(access))
    parts += [type_rule_filter(rule.resource_type, rule.any_of, resolved) for rule in access.extra]
    if access.patient_criteria:
        parts.append(
            patients_filter(_answer(Lookup(PatientsMeeting(access.patient_criteria), None), resolved))
        )
    if access.any_of:
        parts.append(any_of([access_filter(member, resolved) for member in access.any_of]))
    return all_of(parts)


def patients_filter(patients: Sequence[str]) -> Doc:
    """In the compartment of one of `patients` (a Patient lists itself, so it is judged by itself)."""
    return {"compartments": {"$in": sorted(patients)}} if patients else FALSE


def labels_filter(access: AccessFilter) -> Doc:
    """No `_security` label of the label system outside the allowed codes (a label without a code is
    not allowed); and, unless unlabeled resources pass, at least one such label."""
    allowed = sorted(code for system, code in access.allowed_labels or () if system == access.label_system)
    forbidden = {"ix": {"$elemMatch": {"p": "_security", "s": access.label_system, "c": {"$nin": allowed}}}}
    parts: list[Doc] = [{"$nor": [forbidden]}]
    if not access.allow_unlabeled:
        parts.append({"ix": {"$elemMatch": {"p": "_security", "s": access.label_system}}})
    return all_of(parts)


def type_rule_filter(
    resource_type: str, groups: tuple[tuple[Criterion, ...], ...], resolved: Resolved
) -> Doc:
    """Resources of another type pass; those of `resource_type` must meet every criterion of one
    group. Rule criteria are not themselves access-narrowed (as in the SQLite adapter): they hold
    only plain clauses on the resource's own entries (access/scopes.py refuses chains and _has)."""
    met = any_of([all_of([criterion_filter(c, None, resolved) for c in group]) for group in groups])
    return any_of([{"type": {"$ne": resource_type}}, met])


# -- sort ------------------------------------------------------------------------------------------


def page_projection(order: Order) -> Doc:
    """What a search page reads: the stored version, plus the sort fields keyset paging resumes from."""
    return {**dict.fromkeys(STORED_FIELDS, 1), **{field: 1 for field, _ in order}}


STORED_FIELDS = ("type", "id", "version", "last_updated", "deleted", "method", "body")


def sort_order(keys: Sequence[SortKey]) -> Order:
    """The sort as (field, direction) pairs, missing values last, then creation order (stable).

    `sk.<param>` holds per parameter `h` (1: has a value), `a` (smallest value, for ascending) and
    `d` (largest, for descending); sorting on `h` descending first puts resources without the
    parameter last, as the SQLite adapter does, since MongoDB sorts a missing field first.
    """
    order: Order = []
    for key in keys:
        direction = -1 if key.descending else 1
        if key.kind == "id":
            order.append(("id", direction))
        elif key.kind == "lastUpdated":
            order.append(("last_updated", direction))
        else:
            order += [
                (f"sk.{key.param}.h", -1),
                (f"sk.{key.param}.{'d' if key.descending else 'a'}", direction),
            ]
    return order + TIE_BREAK
