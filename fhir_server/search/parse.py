"""From query-string pairs to a `SearchQuery`. https://hl7.org/fhir/R4/search.html

Every parameter is resolved against the search-parameter registry here, so storage adapters get
typed, normalised values. Strict (the default, `Prefer: handling=strict`): anything unknown,
unsupported or malformed is a 400 naming it. Lenient: it is skipped and listed in `ignored`.

Choices where the spec leaves room (also in the CapabilityStatement's spirit):
- `_text` / `_content`: every folded (case- and accent-insensitive) word of the value must begin a
  word of the narrative / of the resource's string values and narrative. No stemming, no boolean
  operators.
- `_list=id`: resources referenced by `List/id`'s entries (functional lists like `$current-*` are
  not supported).
- Token `:in` / `:not-in` work for value sets stored on this server whose content is enumerated
  (`expansion.contains`, or `compose.include` concepts / whole code systems; the REST layer expands
  them, see `rest/search.py`), named by canonical url (`|version` picks that version, none the
  latest: `valuesets.pick_value_set`) or literally (`ValueSet/id`); a comma list is any of them.
  `:above` / `:below` are not supported (no subsumption service); `:text` is a folded substring
  of the coding display / CodeableConcept text; `:of-type` works on Identifier-typed parameters
  (`identifier:of-type=typeSystem|typeCode|value`).
- Empty values (`name=`) are ignored, as the spec says, and reported in `ignored`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, Protocol

from fhir_server.digits import ascii_whole
from fhir_server.errors import BadRequest
from fhir_server.indexing.registry import get_registry
from fhir_server.search import values as v
from fhir_server.search.paging import checked_cursor
from fhir_server.search.query import (
    CanonicalParam,
    ChainClause,
    Clause,
    CompositeValue,
    Criterion,
    HasClause,
    Include,
    Kind,
    MissingValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    TokenValue,
    Total,
    Value,
)
from fhir_server.validation import supported_types

DEFAULT_COUNT = 20
MAX_COUNT = 1000
MAX_CHAIN_DEPTH = 4
# Paging by offset past a billion matches is not a real use (a page there costs a scan of them all),
# and the bound keeps offset + count well inside a store's 64-bit integers.
MAX_OFFSET = 1_000_000_000
# One search's filters: each parameter joins the store's index once (more with chains and _has), and
# SQLite fails a 1000-way join; a string parameter's OR list costs SQLite time growing with its square
# (5000 names: ~1 s, 40,000: minutes). Both limits are far beyond a real search, which may still OR
# thousands of codes or ids.
MAX_CRITERIA = 100
MAX_VALUES = 5000
MAX_VALUE_SETS = 20  # distinct value sets named by :in / :not-in in one search
MAX_SORT_KEYS = 10  # 1,000 keys broke SQLite (a 500); a real search sorts by one to three

_IGNORED_BY_SEARCH = {"_format", "_pretty"}  # presentation, handled by the HTTP layer
_SUMMARY = {"true", "text", "data", "count", "false"}
_TOTAL = {"none", "estimate", "accurate"}
# Resource-level parameters every type has; type-less (system) searches may use only these.
_SPECIAL_KINDS: dict[str, Kind] = {
    "_id": "id",
    "_lastUpdated": "lastUpdated",
    "_text": "text",
    "_content": "content",
}
_COMMON_KINDS: dict[str, Kind] = {"_tag": "token", "_security": "token", "_profile": "uri", "_source": "uri"}
_MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"exact", "contains", "missing"}),
    "token": frozenset({"not", "text", "of-type", "in", "not-in", "missing"}),
    "reference": frozenset({"identifier", "missing"}),  # plus :[Type]
    "uri": frozenset({"above", "below", "missing"}),
    "number": frozenset({"missing"}),
    "date": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "composite": frozenset({"missing"}),
    "id": frozenset({"missing"}),
    "lastUpdated": frozenset({"missing"}),
    "text": frozenset(),
    "content": frozenset(),
}
_UNSUPPORTED_MODIFIERS = {"above", "below", "type", "iterate"}
_PREFIXED = {"number", "date", "quantity", "lastUpdated"}


class _ParamDef(Protocol):
    """What we read from a registry SearchParamDef."""

    @property
    def code(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def targets(self) -> Sequence[str]: ...


ValueSetCodes = tuple[tuple[str, str | None], ...]
"""A value set's content as (system, code) pairs; code None = every code of that system."""


@dataclass(frozen=True, slots=True)
class Env:
    """What parsing may consult beyond the parameters themselves."""

    base_url: str | None = None
    value_sets: Mapping[str, ValueSetCodes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ignored:
    """A parameter lenient handling skipped, and why."""

    name: str
    value: str
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedSearch:
    query: SearchQuery
    used: tuple[tuple[str, str], ...] = ()  # the parameters that took effect, for the self link
    ignored: tuple[Ignored, ...] = ()
    summary: str | None = None  # _summary, "false" normalised to None
    elements: tuple[str, ...] | None = None  # _elements


@dataclass
class _State:
    """Accumulates one parse."""

    types: tuple[str, ...]
    query: SearchQuery
    system_level: bool = False  # no type in the URL: `_type` names them
    criteria: list[Criterion] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    summary: str | None = None
    elements: tuple[str, ...] | None = None
    values: int = 0  # the filters' values (alternatives), all parameters together


def parse_search(
    resource_type: str | None,
    params: Sequence[tuple[str, str]],
    *,
    strict: bool = True,
    base_url: str | None = None,
    value_sets: Mapping[str, ValueSetCodes] | None = None,
) -> ParsedSearch:
    """Parse `params` for a search on `resource_type` (None: system level, narrowed by `_type`).

    `base_url`: our own absolute references become local ones. `value_sets`: the value sets
    `:in` / `:not-in` name (as `value_set_urls` lists them: url, url|version, ValueSet/id) -> their
    codes (the REST layer expands those the server holds).
    """
    types = _search_types(resource_type, params)
    state = _State(types, SearchQuery(resource_types=types), system_level=resource_type is None)
    env = Env(base_url, value_sets or {})
    for name, value in params:
        try:
            _one(state, name, value, env)
        except BadRequest as error:
            if strict or name.split(":", 1)[0] == "_query":  # search.html: SHALL refuse an unknown _query
                raise
            state.ignored.append(Ignored(name, value, error.message))
    _settle(state, strict)
    query = replace(state.query, criteria=tuple(state.criteria))
    return ParsedSearch(query, tuple(state.used), tuple(state.ignored), state.summary, state.elements)


def _settle(state: _State, strict: bool) -> None:
    """What depends on several parameters, whatever their order."""
    if state.summary == "count":  # the count alone: no page, whatever `_count` or `_total` said
        state.query = replace(state.query, count=0, total="accurate")
    if state.summary == "text" and (state.query.includes or state.query.revincludes):
        message = "_include and _revinclude cannot be used with _summary=text (search.html#summary)"
        if strict:
            raise BadRequest(message)
        joins = [(n, v) for n, v in state.used if n.split(":", 1)[0] in ("_include", "_revinclude")]
        state.ignored += [Ignored(n, v, message) for n, v in joins]
        state.used = [u for u in state.used if u not in joins]
        state.query = replace(state.query, includes=(), revincludes=())


def _search_types(resource_type: str | None, params: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    if resource_type is not None:
        return (resource_type,)
    named = [t for name, value in params if name == "_type" for t in value.split(",") if t]
    for t in named:
        _require_known_type(t, "_type")
    return tuple(dict.fromkeys(named))


def _require_known_type(resource_type: str, where: str) -> None:
    if resource_type not in supported_types():
        raise BadRequest(f"'{resource_type}' in {where} is not a resource type this server supports")


def _one(state: _State, name: str, value: str, env: Env) -> None:
    """Apply one parameter to the state (or raise BadRequest)."""
    base = name.split(":", 1)[0]
    if base in _IGNORED_BY_SEARCH:
        return
    if not value.strip():  # search.html: "Empty parameters are not an error - they are just ignored"
        state.ignored.append(Ignored(name, value, "an empty value: the parameter is ignored"))
        return
    if base == "_query":
        raise BadRequest(f"This server has no named queries: '{name}={value}' is not one it knows")
    if base == "_type":
        if not state.system_level:
            raise BadRequest(
                f"'_type' chooses the types of a search across all types; this search is of "
                f"{', '.join(state.types)} already (use [base]?_type=... instead)"
            )
        state.used.append((name, value))
        return
    if base in _RESULT_PARAMS:
        _RESULT_PARAMS[base](state, name, value)
        state.used.append((name, value))
        return
    _within_limits(state, name, value)
    state.criteria.append(parse_criterion(state.types, name, value, env=env))
    state.used.append((name, value))


def _within_limits(state: _State, name: str, value: str) -> None:
    if len(state.criteria) >= MAX_CRITERIA:
        raise BadRequest(
            f"'{name}': a search may have at most {MAX_CRITERIA} filter parameters; split it into several"
        )
    state.values += len(v.split_unescaped(value, ",")) if "\\" in value else value.count(",") + 1
    if state.values > MAX_VALUES:
        raise BadRequest(
            f"'{name}': a search may have at most {MAX_VALUES} values in all its filters together "
            "(each comma-separated value counts); split it into several"
        )


# -- criteria -----------------------------------------------------------------------------------


def parse_criterion(
    types: tuple[str, ...], name: str, value: str, *, env: Env | None = None, depth: int = 0
) -> Criterion:
    """One `name=value` filter on resources of `types` (empty: any type)."""
    env = env or Env()
    if depth > MAX_CHAIN_DEPTH:
        raise BadRequest(f"'{name}' chains deeper than {MAX_CHAIN_DEPTH} levels")
    if name.startswith("_has:"):
        return _parse_has(types, name, value, env, depth)
    head, dot, rest = name.partition(".")
    if dot:
        return _parse_chain(types, head, rest, value, env, depth)
    code, _, modifier = head.partition(":")
    if code == "_list":
        return _parse_list(types, modifier, value)
    kind, defs = resolve(types, code)
    return _clause(types, code, kind, defs, modifier or None, value, env)


def resolve(types: tuple[str, ...], code: str) -> tuple[Kind, list[_ParamDef]]:
    """The kind of `code` on every type of `types`, or a 400 listing what is known."""
    if code in _SPECIAL_KINDS:
        return _SPECIAL_KINDS[code], []
    if not types:
        if code in _COMMON_KINDS:
            return _COMMON_KINDS[code], []
        known = sorted([*_SPECIAL_KINDS, *_COMMON_KINDS, "_list", "_has"])
        raise BadRequest(
            f"Unknown search parameter '{code}' for a search across all types. Known: {', '.join(known)}"
            " (name types with _type to use their parameters)"
        )
    defs = [_param_def(t, code) for t in types]
    kinds = {_kind_of(d) for d in defs}
    if len(kinds) > 1:
        raise BadRequest(f"Search parameter '{code}' has different types across {', '.join(types)}")
    return kinds.pop(), defs


def _param_def(resource_type: str, code: str) -> _ParamDef:
    params: Mapping[str, Any] = get_registry().params_for(resource_type)
    found = params.get(code)
    if found is None:
        known = ", ".join(sorted(params))
        raise BadRequest(f"Unknown search parameter '{code}' for {resource_type}. Known: {known}")
    return found  # type: ignore[no-any-return]


def _kind_of(defn: _ParamDef) -> Kind:
    if defn.code in _SPECIAL_KINDS:
        return _SPECIAL_KINDS[defn.code]
    if defn.code in _COMMON_KINDS:
        return _COMMON_KINDS[defn.code]
    if defn.type == "special":
        raise BadRequest(f"Search parameter '{defn.code}' (a special parameter) is not supported")
    return defn.type  # type: ignore[return-value]  # the R4 types are our entry kinds


def _clause(
    types: tuple[str, ...],
    code: str,
    kind: Kind,
    defs: list[_ParamDef],
    modifier: str | None,
    raw: str,
    env: Env,
) -> Clause:
    modifier = _check_modifier(types, code, kind, defs, modifier)
    components = _components(types, kind, defs)
    if modifier == "missing":
        return Clause(code, kind, (_parse_missing(code, raw),), components=components)
    if modifier == "of-type":
        return _of_type(code, raw)
    if modifier in ("in", "not-in"):
        return _in_value_set(code, modifier, raw, env)
    if kind == "reference" and modifier is None:
        modifier = _only_target(defs)  # `patient=1` means Patient/1: a tighter index lookup
    elif kind == "reference" and modifier not in (None, "identifier"):
        _require_type_agrees(code, modifier, raw)
    parsed: list[Value] = []
    for part in v.split_unescaped(raw, ","):
        value = _value(code, kind, modifier, part, components, env)
        parsed += [value, *_as_canonical(value, v.unescape(part))]
    return Clause(code, kind, tuple(parsed), negate=modifier == "not", components=components)


def _as_canonical(value: Value, written: str) -> list[Value]:
    """A local-looking reference may also be a canonical written relatively (`Questionnaire/gcs`,
    `library-x`), which extraction keeps as a url: match those too (OR)."""
    if not isinstance(value, ReferenceValue) or value.url is not None or value.target_id is None:
        return []
    urls = dict.fromkeys(
        [written, f"{value.target_type}/{value.target_id}" if value.target_type else written]
    )
    return [ReferenceValue(url=url) for url in urls]


def _check_modifier(
    types: tuple[str, ...], code: str, kind: Kind, defs: list[_ParamDef], modifier: str | None
) -> str | None:
    if modifier is None:
        return None
    if kind == "reference" and modifier not in _MODIFIERS["reference"]:
        allowed = {t for d in defs for t in d.targets}
        if modifier in supported_types() and (not allowed or modifier in allowed):
            return modifier  # :[Type]
    if modifier in _MODIFIERS[kind]:
        return modifier
    why = "is not supported by this server" if modifier in _UNSUPPORTED_MODIFIERS else "is not valid"
    raise BadRequest(f"Modifier ':{modifier}' on {kind} search parameter '{code}' {why}")


def _require_type_agrees(code: str, type_modifier: str, raw: str) -> None:
    """`subject:Patient=Group/1` asks for a Patient that is a Group: a 400 naming the contradiction
    (a silent empty answer would hide the mistake; lenient handling skips the parameter)."""
    for part in v.split_unescaped(raw, ","):
        try:
            written = v.parse_reference(part, None, None)
        except ValueError:
            continue  # malformed: parsing the value proper says so
        if written.target_type is not None and written.target_type != type_modifier:
            raise BadRequest(
                f"'{code}:{type_modifier}={v.unescape(part)}': the value names a {written.target_type}, "
                f"not a {type_modifier}; use {code}:{type_modifier}=[id] or {code}={v.unescape(part)}"
            )


def _only_target(defs: list[_ParamDef]) -> str | None:
    targets = {t for d in defs for t in d.targets}
    return targets.pop() if len(targets) == 1 else None


def _of_type(code: str, raw: str) -> Clause:
    """`identifier:of-type=typeSystem|typeCode|value`, matched against the entries extraction writes
    under `<code>:of-type` (system = type system, code = "typeCode|value")."""
    values: list[Value] = []
    for part in v.split_unescaped(raw, ","):
        pieces = [v.unescape(p) for p in v.split_unescaped(part, "|")]
        if len(pieces) != 3 or not pieces[1] or not pieces[2]:
            raise BadRequest(f"'{code}:of-type' takes system|code|value, not '{part}'")
        values.append(TokenValue(pieces[0] or None, f"{pieces[1]}|{pieces[2]}"))
    return Clause(f"{code}:of-type", "token", tuple(values))


def _in_value_set(code: str, modifier: str, raw: str, env: Env) -> Clause:
    """`:in` = a code of the value set; `:not-in` = none of its codes (like `:not`). A comma list
    names several value sets: a code of any of them (OR)."""
    codes: dict[tuple[str, str | None], None] = {}
    for ref in value_set_refs(raw):
        found = env.value_sets.get(ref)
        if found is None:
            raise BadRequest(
                f"'{code}:{modifier}': value set '{ref}' is not one this server holds and can expand"
            )
        codes.update(dict.fromkeys(found))
    values: tuple[Value, ...] = tuple(TokenValue(system, c) for system, c in codes)
    return Clause(code, "token", values, negate=modifier == "not-in")


def value_set_refs(raw: str) -> list[str]:
    """The value sets one `:in` / `:not-in` value names, as written (unescaped): a canonical url,
    `url|version`, or a literal reference such as `ValueSet/123`; commas separate several."""
    return [v.unescape(part) for part in v.split_unescaped(raw, ",") if part]


def value_set_urls(params: Sequence[tuple[str, str]]) -> list[str]:
    """The value sets named by `:in` / `:not-in` parameters, for the caller to expand first: the keys
    `parse_search` then looks up in `value_sets`."""
    found = list(
        dict.fromkeys(
            ref
            for name, value in params
            if name.rsplit(".", 1)[-1].endswith((":in", ":not-in"))
            for ref in value_set_refs(value)
        )
    )
    if len(found) > MAX_VALUE_SETS:  # each is looked up and expanded before the search is parsed
        raise BadRequest(f"A search may name at most {MAX_VALUE_SETS} value sets with :in / :not-in")
    return found


def _parse_missing(code: str, raw: str) -> MissingValue:
    if raw not in ("true", "false"):
        raise BadRequest(f"'{code}:missing' takes true or false, not '{raw}'")
    return MissingValue(raw == "true")


def _value(
    code: str, kind: Kind, modifier: str | None, raw: str, components: tuple[Kind, ...], env: Env
) -> Value:
    if raw == "":
        raise BadRequest(f"Search parameter '{code}' has an empty value inside its list")
    try:
        return _typed_value(kind, modifier, raw, components, env)
    except ValueError as error:
        raise BadRequest(f"Search parameter '{code}': {error}") from None


def _typed_value(kind: Kind, modifier: str | None, raw: str, components: tuple[Kind, ...], env: Env) -> Value:
    if kind in ("number",):
        return v.parse_number(raw)
    if kind in ("date", "lastUpdated"):
        return v.parse_date(raw)
    if kind == "quantity":
        return v.parse_quantity(raw)
    if kind in ("string", "text", "content"):
        return v.parse_string(raw, "contains" if kind in ("text", "content") else modifier)
    if kind in ("token", "id"):
        return _token_or_id(kind, modifier, raw)
    if kind == "reference":
        return v.parse_reference(raw, modifier, env.base_url)
    if kind == "uri":
        return v.parse_uri(raw, modifier)
    return _composite(raw, components, env)


def _token_or_id(kind: Kind, modifier: str | None, raw: str) -> TokenValue:
    if kind == "id":
        return TokenValue(None, v.unescape(raw))
    return v.parse_token(raw, "text" if modifier == "text" else None)


def _composite(raw: str, components: tuple[Kind, ...], env: Env) -> CompositeValue:
    parts = v.split_unescaped(raw, "$")
    if len(parts) != len(components):
        raise ValueError(f"'{raw}' needs {len(components)} parts separated by $ ({', '.join(components)})")
    return CompositeValue(
        tuple(_typed_value(k, None, p, (), env) for k, p in zip(components, parts, strict=True))
    )


def _components(types: tuple[str, ...], kind: Kind, defs: list[_ParamDef]) -> tuple[Kind, ...]:
    """The kind of each component of a composite parameter, in order."""
    if kind != "composite" or not defs:
        return ()
    parts = get_registry().components(types[0], defs[0])  # type: ignore[arg-type]  # a registry def
    return tuple(_kind_of(p) for p in parts)


# -- chains, reverse chains, _list ---------------------------------------------------------------


def _parse_chain(types: tuple[str, ...], head: str, rest: str, raw: str, env: Env, depth: int) -> ChainClause:
    code, _, type_modifier = head.partition(":")
    kind, defs = resolve(types, code)
    if kind != "reference":
        raise BadRequest(f"'{head}.{rest}' chains through '{code}', which is not a reference parameter")
    targets = [type_modifier] if type_modifier else sorted({t for d in defs for t in d.targets})
    inner_code = rest.partition(".")[0].partition(":")[0]
    usable = tuple(t for t in targets if t in supported_types() and _knows(t, inner_code))
    if not usable:
        raise BadRequest(
            f"Chained search '{head}.{rest}': no target type of '{code}' has a parameter '{inner_code}'"
        )
    inner = parse_criterion(usable, rest, raw, env=env, depth=depth + 1)
    named = {t for source in types for t in get_registry().canonical_targets(source, code)}
    return ChainClause(code, usable, inner, tuple(t for t in usable if t in named))


def _knows(resource_type: str, code: str) -> bool:
    if code in _SPECIAL_KINDS or code in _COMMON_KINDS or code == "_has":
        return True
    return code in get_registry().params_for(resource_type)


def _parse_has(types: tuple[str, ...], name: str, raw: str, env: Env, depth: int) -> HasClause:
    parts = name.split(":", 3)
    if len(parts) != 4 or not all(parts[1:]):
        raise BadRequest(f"'{name}' is not a reverse chain: use _has:Type:reference:parameter=value")
    _, source, ref_code, rest = parts
    _require_known_type(source, name)
    kind, defs = resolve((source,), ref_code)
    if kind != "reference":
        raise BadRequest(f"'{name}': '{ref_code}' on {source} is not a reference parameter")
    targets = {t for d in defs for t in d.targets}
    if types and targets and not targets.intersection(types):
        raise BadRequest(f"'{name}': {source}.{ref_code} never refers to {', '.join(types)}")
    inner = parse_criterion((source,), rest, raw, env=env, depth=depth + 1)
    named = get_registry().canonical_targets(source, ref_code)
    return HasClause(source, ref_code, inner, tuple(t for t in named if not types or t in types))


def _parse_list(types: tuple[str, ...], modifier: str, raw: str) -> HasClause:
    """`_list=42`: resources that List/42 refers to, i.e. `_has:List:item:_id=42`."""
    if modifier:
        raise BadRequest(f"Modifier ':{modifier}' on '_list' is not supported")
    if raw.startswith("$"):
        raise BadRequest(f"Functional list '{raw}' in _list is not supported")
    ids = tuple(TokenValue(None, v.unescape(p)) for p in v.split_unescaped(raw, ","))
    return HasClause("List", "item", Clause("_id", "id", ids))


# -- result parameters ---------------------------------------------------------------------------


def _set_count(state: _State, name: str, raw: str) -> None:
    count = _whole_number(name, raw)
    state.query = replace(state.query, count=min(count, MAX_COUNT))


def _set_offset(state: _State, name: str, raw: str) -> None:
    offset = _whole_number(name, raw)
    if offset > MAX_OFFSET:
        raise BadRequest(
            f"'{name}' may be at most {MAX_OFFSET:,}, not {raw}; follow the Bundle's next links to page on"
        )
    state.query = replace(state.query, offset=offset)


def _set_cursor(state: _State, name: str, raw: str) -> None:
    state.query = replace(state.query, after=checked_cursor(raw))


def _whole_number(name: str, raw: str) -> int:
    number = ascii_whole(raw)
    if number is None:
        raise BadRequest(f"'{name}' must be a whole number written in the digits 0-9, not '{raw}'")
    return number


def _set_total(state: _State, name: str, raw: str) -> None:
    if raw not in _TOTAL:
        raise BadRequest(f"'_total' must be one of none, estimate, accurate; not '{raw}'")
    total: Total = raw  # type: ignore[assignment]  # checked above
    state.query = replace(state.query, total=total)


def _set_summary(state: _State, name: str, raw: str) -> None:
    if raw not in _SUMMARY:
        raise BadRequest(f"'_summary' must be one of {', '.join(sorted(_SUMMARY))}; not '{raw}'")
    state.summary = None if raw == "false" else raw


def _set_elements(state: _State, name: str, raw: str) -> None:
    names = tuple(e.strip() for e in raw.split(",") if e.strip())
    if not names:
        raise BadRequest("'_elements' needs at least one element name")
    state.elements = names


def _set_sort(state: _State, name: str, raw: str) -> None:
    items = raw.split(",")
    if len(items) > MAX_SORT_KEYS:  # each key is an expression over the matches' entries
        raise BadRequest(f"'_sort' may have at most {MAX_SORT_KEYS} keys")
    keys: list[SortKey] = []
    for item in items:
        descending = item.startswith("-")
        code = item[1:] if descending else item
        if not code:
            raise BadRequest(f"'_sort={raw}' has an empty key")
        kind, _ = resolve(state.types, code)
        if kind in ("composite", "text", "content"):
            raise BadRequest(f"Sorting on '{code}' ({kind}) is not supported")
        keys.append(SortKey(code, kind, descending))
    state.query = replace(state.query, sort=tuple(keys))


def _set_include(state: _State, name: str, raw: str) -> None:
    base, _, modifier = name.partition(":")
    if modifier not in ("", "iterate", "recurse"):
        raise BadRequest(f"'{name}' has an unknown modifier; only :iterate is allowed")
    include = parse_include(raw, iterate=bool(modifier))
    # The same include twice adds nothing but its cost again (each is run per page, and iterated).
    if base == "_include" and include not in state.query.includes:
        state.query = replace(state.query, includes=(*state.query.includes, include))
    elif base == "_revinclude" and include not in state.query.revincludes:
        state.query = replace(state.query, revincludes=(*state.query.revincludes, include))


def parse_include(raw: str, *, iterate: bool) -> Include:
    """`Source:param[:Target]` or `*` (every reference of the matched resources)."""
    if raw == "*":
        return Include(None, None, None, iterate, canonical_params(None, None, None))
    parts = raw.split(":")
    if len(parts) not in (2, 3):
        raise BadRequest(f"'{raw}' is not an include: use Type:parameter[:TargetType] or *")
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    _require_known_type(source, raw)
    if target is not None:
        _require_known_type(target, raw)
    if code == "*":
        return Include(source, None, target, iterate, canonical_params(source, None, target))
    kind, _ = resolve((source,), code)
    if kind != "reference":
        raise BadRequest(f"'{raw}': '{code}' on {source} is not a reference parameter")
    return Include(source, code, target, iterate, canonical_params(source, code, target))


@cache
def canonical_params(source: str | None, code: str | None, target: str | None) -> tuple[CanonicalParam, ...]:
    """The reference parameters an include follows (`code` on `source`; None: every one) that may
    hold canonical urls, each with the types a canonical names (of `target` only, when given)."""
    registry = get_registry()
    found: list[CanonicalParam] = []
    for source_type in [source] if source else sorted(supported_types()):
        params = registry.params_for(source_type)
        for param in [code] if code else sorted(c for c, sp in params.items() if sp.type == "reference"):
            named = tuple(t for t in registry.canonical_targets(source_type, param) if target in (None, t))
            if named:
                found.append(CanonicalParam(source_type, param, named))
    return tuple(found)


_RESULT_PARAMS = {
    "_count": _set_count,
    "_offset": _set_offset,
    "_cursor": _set_cursor,
    "_total": _set_total,
    "_summary": _set_summary,
    "_elements": _set_elements,
    "_sort": _set_sort,
    "_include": _set_include,
    "_revinclude": _set_include,
}
