"""Write-time index extraction: a resource's JSON -> typed, normalised index entries.

Each parameter's compiled FHIRPath expression (fhirpath.py) selects typed nodes; a converter chosen
by (parameter type, node type) turns each node into entries. https://hl7.org/fhir/R4/search.html

Encodings other engineers rely on:
- `_id` is a TokenEntry(system=None, code=<id>).
- Identifier: TokenEntry(system, value, text=folded Identifier.type.text). For `:of-type`, each
  Identifier.type.coding also yields TokenEntry(param="<code>:of-type", system=<type system>,
  code="<type code>|<value>"), i.e. the query `identifier:of-type=S|C|V` is the token `S|C|V` on
  param `identifier:of-type`.
- CodeableConcept: one TokenEntry per coding (text = folded display) plus, when it has `text`,
  TokenEntry(system=None, code=None, text=folded text). `:text` matches any entry's `text`.
- ContactPoint: TokenEntry(system=None, code=value) - R4 uses no system for ContactPoint tokens.
- code elements with a required binding to a one-system value set carry that implicit system.
- boolean: code "true"/"false". `Patient.deceased` (a boolean expression) always yields one.
- References: "Type/id[/_history/v]" -> target_type, target_id; absolute URLs and urn:uuid ->
  url (target_type parsed from an absolute URL's path, target_id None); "#contained" -> url;
  canonicals -> url without "|version", and a versioned one also as written (`url|1.2`), so a
  search for `url` finds every version and one for `url|1.2` that version;
  Reference.identifier -> identifier_system/_value;
  inline resources (Bundle composition/message) -> their type and id.
- Quantities: QuantityEntry(param, value, low, high, system, code, unit) as written. With
  `extract_entries(..., canonical_quantities=True)`, a UCUM quantity whose unit
  normalize.ucum_factor understands (mg, mg/dL, mmol/L, 10*9/L, min, a, ...) also gets
  QuantityEntry(param="<code>:canonical", ...) in canonical units (mg/dL -> g/L, unit None). A query
  with a UCUM system and a convertible code is canonicalised with normalize.ucum_canonical and
  matched against `<code>:canonical`; any other query (no unit, other systems) against `<code>`,
  so `value-quantity=4.5` never matches 4500 mg. Composites carry only the quantity as written.
- `_text` / `_content`: one StringEntry whose value is the folded words (narrative / all string
  values) separated by single spaces; match them with word-prefix or contains semantics.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from fhir_server.indexing.entries import (
    CompositeEntry,
    DateEntry,
    IndexEntry,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from fhir_server.indexing.fhirpath import Node, base_type, children, compile_expression
from fhir_server.indexing.normalize import (
    date_bounds,
    fold,
    json_number_bounds,
    money_parts,
    period_bounds,
    quantity_parts,
    range_parts,
    timing_bounds,
    ucum_canonical,
    words,
)
from fhir_server.indexing.registry import Registry, SearchParamDef, get_registry

Converter = Callable[[str, Any, str], list[IndexEntry]]  # (param code, value, node type) -> entries
Extractor = Callable[[Node], list[IndexEntry]]
CANONICAL = ":canonical"  # suffix of the param under which quantities in canonical UCUM units go
# A parameter's extractor with the top-level keys it reads (None: always run it).
Planned = tuple[str, Extractor, tuple[str, ...] | None]

_EXTENSION_VALUES = dict(children("Extension", "value"))
_QUANTITY_TYPES = frozenset(
    {"Quantity", "SimpleQuantity", "Age", "Duration", "Distance", "Count", "MoneyQuantity"}
)
_DATE_TYPES = frozenset({"date", "dateTime", "instant"})
_STRING_TYPES = frozenset({"string", "markdown", "code", "id", "uri", "url", "canonical"})
_URI_TYPES = frozenset({"uri", "url", "canonical", "oid", "uuid"})
_NUMBER_TYPES = frozenset({"decimal", "integer", "positiveInt", "unsignedInt"})
_TOKEN_PRIMITIVES = frozenset({"code", "string", "id", "uri", "url", "canonical", "oid", "uuid", "markdown"})
_HUMAN_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")
_TAG = re.compile(r"<[^>]*>|&\w+;|&#\d+;")
_CONTENT_SKIP = frozenset({"reference", "system", "url", "id", "resourceType", "data", "fullUrl"})


# ---------------------------------------------------------------------------------------------
# Extension values


def unwrap_extension(node: Node) -> Node | None:
    """An Extension node stands for its value[x] when a parameter selects the extension itself."""
    value, t = node
    if t != "Extension" or type(value) is not dict:
        return node
    for key in value:  # an extension has a few keys; value[x] has fifty alternatives
        vt = _EXTENSION_VALUES.get(key)
        if vt is not None:
            return value[key], vt
    return None


# ---------------------------------------------------------------------------------------------
# token


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if type(value) is dict else {}


def _text(value: Any) -> str | None:
    return fold(value) if isinstance(value, str) and value.strip() else None


def _coding_token(code: str, coding: Mapping[str, Any]) -> list[IndexEntry]:
    system, value, display = coding.get("system"), coding.get("code"), _text(coding.get("display"))
    if system is None and value is None and display is None:
        return []
    return [TokenEntry(code, system, value, display)]  # a display-only coding still serves `:text`


def _concept_tokens(code: str, cc: Mapping[str, Any]) -> list[IndexEntry]:
    entries: list[IndexEntry] = []
    for coding in cc.get("coding") or ():
        if type(coding) is dict:
            entries.extend(_coding_token(code, coding))
    text = _text(cc.get("text"))
    if text:
        entries.append(TokenEntry(code, None, None, text))
    return entries


def _identifier_tokens(code: str, ident: Mapping[str, Any]) -> list[IndexEntry]:
    system, value = ident.get("system"), ident.get("value")
    id_type = _mapping(ident.get("type"))
    if system is None and value is None:
        return []
    entries: list[IndexEntry] = [TokenEntry(code, system, value, _text(id_type.get("text")))]
    for coding in id_type.get("coding") or ():
        if type(coding) is dict and coding.get("code") and value is not None:
            entries.append(TokenEntry(f"{code}:of-type", coding.get("system"), f"{coding['code']}|{value}"))
    return entries


def _primitive_token(code: str, value: Any, t: str) -> list[IndexEntry]:
    if isinstance(value, bool):
        return [TokenEntry(code, None, "true" if value else "false")]
    if not isinstance(value, str):
        return []
    system = t.split("|", 1)[1] if "|" in t else None
    return [TokenEntry(code, system, value)]


def token_entries(code: str, value: Any, t: str) -> list[IndexEntry]:
    kind = base_type(t)
    if type(value) is dict:
        if kind == "CodeableConcept":
            return _concept_tokens(code, value)
        if kind == "Coding":
            return _coding_token(code, value)
        if kind == "Identifier":
            return _identifier_tokens(code, value)
        if kind == "ContactPoint":
            cp_value = value.get("value")
            return [TokenEntry(code, None, cp_value)] if isinstance(cp_value, str) else []
        return []
    if kind in _TOKEN_PRIMITIVES or kind == "boolean":
        return _primitive_token(code, value, t)
    return []


# ---------------------------------------------------------------------------------------------
# string


def _string(code: str, value: Any) -> list[IndexEntry]:
    if not isinstance(value, str) or not value.strip():
        return []
    return [StringEntry(code, fold(value), value)]


def _parts(code: str, value: Mapping[str, Any], parts: Sequence[str]) -> list[IndexEntry]:
    entries: list[IndexEntry] = []
    for part in parts:
        item = value.get(part)
        for text in item if type(item) is list else (item,):
            entries.extend(_string(code, text))
    return entries


def string_entries(code: str, value: Any, t: str) -> list[IndexEntry]:
    if t == "HumanName" and type(value) is dict:
        return _parts(code, value, _HUMAN_NAME_PARTS)
    if t == "Address" and type(value) is dict:
        return _parts(code, value, _ADDRESS_PARTS)
    if base_type(t) in _STRING_TYPES:
        return _string(code, value)
    return []


# ---------------------------------------------------------------------------------------------
# date, number, quantity, uri


def date_entries(code: str, value: Any, t: str) -> list[IndexEntry]:
    bounds: tuple[int, int] | None = None
    if (t in _DATE_TYPES or t == "string") and isinstance(value, str):
        try:
            bounds = date_bounds(value)
        except ValueError:
            # Free-text alternatives (Immunization.occurrenceString "January 2012") have no date.
            return []
    elif t == "Period" and type(value) is dict:
        bounds = period_bounds(value)
    elif t == "Timing" and type(value) is dict:
        bounds = timing_bounds(value)
    return [DateEntry(code, bounds[0], bounds[1])] if bounds else []


def number_entries(code: str, value: Any, t: str) -> list[IndexEntry]:
    if t in _NUMBER_TYPES:
        bounds = json_number_bounds(value)
        return [NumberEntry(code, *bounds)] if bounds else []
    if t == "Range" and type(value) is dict:
        parts = range_parts(value)
        return [NumberEntry(code, parts[0], parts[1], parts[2])] if parts else []
    return []


def quantity_entries(code: str, value: Any, t: str) -> list[IndexEntry]:
    if type(value) is not dict:
        return []
    if t in _QUANTITY_TYPES:
        parts = quantity_parts(value)
    elif t == "Money":
        parts = money_parts(value)
    elif t == "Range":
        parts = range_parts(value)
    else:
        return []  # SampledData has no single value to compare
    return [QuantityEntry(code, *parts)] if parts else []


def canonical_copies(entries: Iterable[IndexEntry]) -> list[IndexEntry]:
    """For each UCUM quantity in units normalize.ucum_factor understands, a copy in canonical units
    under `<param>:canonical` (see the module docstring). Composites are left as written."""
    copies: list[IndexEntry] = []
    for e in entries:
        if isinstance(e, QuantityEntry) and not e.param.endswith(CANONICAL):
            canonical = ucum_canonical((e.value, e.low, e.high, e.system, e.code, e.unit))
            if canonical is not None:
                copies.append(QuantityEntry(e.param + CANONICAL, *canonical))
    return copies


def uri_entries(code: str, value: Any, t: str) -> list[IndexEntry]:
    if base_type(t) in _URI_TYPES and isinstance(value, str) and value:
        return [UriEntry(code, value)]
    return []


# ---------------------------------------------------------------------------------------------
# reference


def split_reference(ref: str) -> tuple[str | None, str | None, str | None]:
    """(target_type, target_id, url) of a Reference.reference string; see module docstring."""
    if ref.startswith("#") or ref.startswith("urn:"):
        return None, None, ref
    path = ref.split("/_history/", 1)[0]
    parts = path.split("/")
    if "://" not in ref:
        if len(parts) == 2 and parts[0][:1].isupper() and parts[1]:
            return parts[0], parts[1], None
        return None, None, ref
    target_type = parts[-2] if len(parts) >= 2 and parts[-2][:1].isupper() else None
    return target_type, None, path


def _reference(code: str, value: Mapping[str, Any]) -> list[IndexEntry]:
    ref = value.get("reference")
    target_type, target_id, url = split_reference(ref) if isinstance(ref, str) else (None, None, None)
    if target_type is None and isinstance(value.get("type"), str):
        target_type = value["type"]
    ident = _mapping(value.get("identifier"))
    id_system, id_value = ident.get("system"), ident.get("value")
    if target_id is None and url is None and id_value is None:
        return []  # a display-only reference cannot be searched for
    return [ReferenceEntry(code, target_type, target_id, url, id_system, id_value)]


def reference_entries(code: str, value: Any, t: str) -> list[IndexEntry]:
    kind = base_type(t)
    if kind == "Reference" and type(value) is dict:
        return _reference(code, value)
    if kind in _URI_TYPES and isinstance(value, str) and value:
        url, _, version = value.partition("|")
        versioned = [ReferenceEntry(code, None, None, value)] if version else []
        return [ReferenceEntry(code, None, None, url), *versioned]
    if type(value) is dict and "resourceType" in value:  # an inline resource, as in Bundle.entry
        return [ReferenceEntry(code, value["resourceType"], value.get("id"))]
    return []


CONVERTERS: Mapping[str, Converter] = {
    "token": token_entries,
    "string": string_entries,
    "date": date_entries,
    "number": number_entries,
    "quantity": quantity_entries,
    "reference": reference_entries,
    "uri": uri_entries,
}


# ---------------------------------------------------------------------------------------------
# per-parameter extractors


def _simple_extractor(sp: SearchParamDef, resource_type: str, expression: str) -> Extractor:
    run = compile_expression(expression, resource_type).run
    convert, code = CONVERTERS[sp.type], sp.code
    inline_targets = frozenset(sp.targets)

    def extract(root: Node) -> list[IndexEntry]:
        entries: list[IndexEntry] = []
        for node in run([root], root):
            unwrapped = unwrap_extension(node)
            if unwrapped is not None:
                entries.extend(convert(code, unwrapped[0], unwrapped[1]))
        if code in ("composition", "message") and resource_type == "Bundle":
            # Bundle.entry[0].resource is any resource; only the declared target type counts.
            entries = [
                e for e in entries if isinstance(e, ReferenceEntry) and e.target_type in inline_targets
            ]
        return entries

    return extract


def _component_extractor(
    code: str, param_type: str, expression: str, run_types: Iterable[str], resource_type: str
) -> Callable[[Node, Node], list[IndexEntry]]:
    run = compile_expression(expression, resource_type, run_types).run
    convert = CONVERTERS[param_type]

    def extract(node: Node, root: Node) -> list[IndexEntry]:
        entries: list[IndexEntry] = []
        for found in run([node], root):
            unwrapped = unwrap_extension(found)
            if unwrapped is not None:
                entries.extend(convert(code, unwrapped[0], unwrapped[1]))
        # A text-only token (CodeableConcept.text) is for `:text`, never a composite's code half.
        return [e for e in entries if not (isinstance(e, TokenEntry) and e.code is None and e.system is None)]

    return extract


def _composite_extractor(sp: SearchParamDef, resource_type: str, registry: Registry) -> Extractor:
    """The cross product of component values, each combination taken from one element."""
    assert sp.expression is not None
    compiled = compile_expression(sp.expression, resource_type)
    defs = registry.components(resource_type, sp)
    if len(defs) != len(sp.components):
        raise ValueError(f"composite {sp.code} on {resource_type}: unresolved components")
    parts = [
        _component_extractor(c.code, c.type, expr, compiled.types, resource_type)
        for c, (_, expr) in zip(defs, sp.components, strict=True)
    ]
    run, code = compiled.run, sp.code
    reversed_parts = parts[::-1]

    def extract(root: Node) -> list[IndexEntry]:
        entries: list[IndexEntry] = []
        for element in run([root], root):
            values: list[list[IndexEntry]] = []
            for part in reversed_parts:  # the value half is the one usually missing: try it first
                found = part(element, root)
                if not found:
                    break
                values.append(found)
            else:
                values.reverse()
                entries.extend(CompositeEntry(code, combo) for combo in itertools.product(*values))
        return entries

    return extract


def _narrative_words(resource: Mapping[str, Any]) -> Iterable[str]:
    text = resource.get("text")
    div = text.get("div") if type(text) is dict else None
    return words(_TAG.sub(" ", div)) if isinstance(div, str) else ()


def _string_values(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif type(value) is dict:
        for key, item in value.items():
            if key == "div" and isinstance(item, str):  # narrative: its text, not its markup
                out.append(_TAG.sub(" ", item))
            elif key not in _CONTENT_SKIP:
                _string_values(item, out)
    elif type(value) is list:
        for item in value:
            _string_values(item, out)


def _words_entry(code: str, words: Iterable[str]) -> list[IndexEntry]:
    text = " ".join(words)
    return [StringEntry(code, text, text)] if text else []


def _text_extractor(root: Node) -> list[IndexEntry]:
    return _words_entry("_text", _narrative_words(root[0]))


def _content_extractor(root: Node) -> list[IndexEntry]:
    values: list[str] = []
    _string_values(root[0], values)
    return _words_entry("_content", words(" ".join(values)))


def _extractor(sp: SearchParamDef, resource_type: str, registry: Registry) -> Extractor:
    if sp.code == "_text" and sp.expression is None:
        return _text_extractor
    if sp.code == "_content" and sp.expression is None:
        return _content_extractor
    assert sp.expression is not None  # the registry only admits compilable definitions
    if sp.type == "composite":
        return _composite_extractor(sp, resource_type, registry)
    return _simple_extractor(sp, resource_type, sp.expression)


def _root_keys(sp: SearchParamDef, resource_type: str) -> tuple[str, ...] | None:
    """Top-level keys without which `sp` has no value on a resource (None when unknown)."""
    if sp.expression is None:
        return None
    compiled = compile_expression(sp.expression, resource_type)
    if sp.type != "composite":
        return None if compiled.first_keys is None else tuple(sorted(compiled.first_keys))
    if not compiled.identity:  # components are read from elements under these keys
        return None if compiled.first_keys is None else tuple(sorted(compiled.first_keys))
    # The composite's element is the resource itself and every component must be present: gate on
    # the last one, usually the value, which is the one most often absent.
    first = compile_expression(sp.components[-1][1], resource_type, compiled.types).first_keys
    return None if first is None else tuple(sorted(first))


@cache
def extractors_for(resource_type: str) -> tuple[Planned, ...]:
    """(param code, extractor, keys) for every supported parameter of `resource_type`, compiled once.

    Most parameters of a sparse resource are absent, so `extract_entries` skips a parameter when the
    resource has none of the top-level keys its expression starts from.
    """
    registry = get_registry()
    params = registry.params_for(resource_type)
    return tuple(
        (code, _extractor(sp, resource_type, registry), _root_keys(sp, resource_type))
        for code, sp in params.items()
    )


def extract_entries(resource: Mapping[str, Any], *, canonical_quantities: bool = False) -> list[IndexEntry]:
    """Every index entry of `resource`, for all its type's search parameters, without duplicates.

    `canonical_quantities` adds the `<param>:canonical` copies of UCUM quantities; it is off until
    the query parser canonicalises UCUM query values to match them.
    """
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or resource_type not in get_registry().resource_types():
        raise ValueError(f"not a known resource type: {resource_type!r}")
    root: Node = (resource, resource_type)
    entries: list[IndexEntry] = []
    for _code, extract, keys in extractors_for(resource_type):
        if keys is not None:
            for key in keys:
                if key in resource:
                    break
            else:
                continue  # none of the elements it reads is present
        found = extract(root)
        # Unions and repeated names can give one value twice; hashing every entry is not free.
        entries.extend(found if len(found) < 2 else dict.fromkeys(found))
    if canonical_quantities:
        entries.extend(canonical_copies(entries))
    return entries


def _entries_of(resource: Mapping[str, Any], params: set[str]) -> list[IndexEntry]:
    """Entries of just the parameters in `params`: compartments need only a few."""
    root: Node = (resource, str(resource["resourceType"]))
    found: list[IndexEntry] = []
    for code, extract, _keys in extractors_for(root[1]):
        if code in params:
            found.extend(extract(root))
    return found


@cache
def _compartment_params() -> Mapping[str, tuple[str, ...]]:
    import json
    from importlib import resources

    text = resources.files("fhir_server.indexing").joinpath("data/patient_compartment.json").read_text()
    raw: dict[str, list[str]] = json.loads(text)
    return {t: tuple(codes) for t, codes in raw.items()}


def compartment_params(resource_type: str) -> tuple[str, ...]:
    """The param codes that place a `resource_type` in a Patient compartment (official definition)."""
    return _compartment_params().get(resource_type, ())


def patient_compartments(
    resource: Mapping[str, Any], entries: Sequence[IndexEntry] | None = None
) -> tuple[str, ...]:
    """The Patient compartments `resource` is in, e.g. ("Patient/123",). Pass `entries` if known.

    A Patient is in its own compartment (listed first) and, through `link`, in those of linked
    patients; the others are sorted.
    """
    resource_type = str(resource.get("resourceType"))
    params = set(compartment_params(resource_type))
    own = (
        [f"Patient/{resource['id']}"]
        if resource_type == "Patient" and isinstance(resource.get("id"), str)
        else []
    )
    found: list[str] = []
    if params:
        for entry in entries if entries is not None else _entries_of(resource, params):
            if (
                isinstance(entry, ReferenceEntry)
                and entry.param in params
                and entry.target_type == "Patient"
                and entry.target_id
            ):
                found.append(f"Patient/{entry.target_id}")
    return tuple(dict.fromkeys(own + sorted(found)))  # own first, then a stable order
