"""Compiled extraction agrees with fhirpathpy on every official example and search parameter.

fhirpathpy is the oracle (tests only): for each example of a registry type and each parameter with
an expression, the oracle's result is non-empty exactly when our extractor yields entries, and the
values agree (token codes, reference targets, folded strings, uris, date lows, numbers).

Where fhirpathpy cannot evaluate the official expression as written, the oracle expression is
rewritten, each rewrite stated in `oracle_expressions`. Where the oracle finds a value that no search
could match (a display-only Reference, a Timing with no dates, ...), `unsearchable` names the reason.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.models import models

from fhir_server.indexing.entries import (
    DateEntry,
    IndexEntry,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from fhir_server.indexing.extract import extract_entries
from fhir_server.indexing.normalize import date_bounds, fold
from fhir_server.indexing.registry import SearchParamDef, get_registry

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "fhir-r4-examples"
MODEL = models["r4"]

# Composite parameters where the oracle and we disagree by design, with the reason.
COMPOSITE_EXCEPTIONS = {
    # FHIRPath's `as(DateTime)` names System.DateTime, which fhirpathpy does not match to a FHIR
    # dateTime; we read the definition's intent (the value-date component is `value.as(dateTime)`).
    ("Observation-date-lastmp", "code-value-date"): "as(DateTime) vs FHIR dateTime",
}


# ---------------------------------------------------------------------------------------------
# The oracle

_RESOLVE_IS = re.compile(r"where\(resolve\(\) is (\w+)\)")
_AS_OPERATOR = re.compile(r"\(([\w.]+) as (\w+)\)")
_HAS_EXTENSION = re.compile(r"hasExtension\(('[^']*')\)")


def _rewrite(expr: str, resource_type: str) -> str:
    """Rewrite what fhirpathpy cannot evaluate into equivalent FHIRPath it can."""
    # fhirpathpy insists on a singleton left of `as` and matches no `Resource.` root; ofType() and
    # the concrete type are the same selection.
    expr = _AS_OPERATOR.sub(r"\1.ofType(\2)", expr).replace(".as(", ".ofType(")
    expr = re.sub(r"\b(Resource|DomainResource)\.", resource_type + ".", expr)
    # fhirpathpy has no resolve(): decide by the reference's type, as the server does.
    expr = _RESOLVE_IS.sub(
        lambda m: f"where(reference.startsWith('{m[1]}/') or reference.contains('/{m[1]}/'))", expr
    )
    # ... and no hasExtension().
    return _HAS_EXTENSION.sub(r"extension.where(url=\1).exists()", expr)


def _union_branches(expr: str) -> list[str]:
    depth, parts, current = 0, [], ""
    for ch in expr:
        depth += (ch == "(") - (ch == ")")
        if ch == "|" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return [*parts, current.strip()]


def oracle_expressions(sp: SearchParamDef, resource_type: str) -> list[str]:
    """The expression(s) whose results stand for `sp`'s values on a `resource_type`."""
    assert sp.expression is not None
    if sp.type != "composite":
        return [_rewrite(sp.expression, resource_type)]
    # A composite has a value where one element has every component. fhirpathpy loses choice
    # types on a union's results, so each branch of the base is evaluated on its own.
    every = " and ".join(f"({_rewrite(c, resource_type)}).exists()" for _, c in sp.components)
    return [f"({_rewrite(b, resource_type)}).where({every})" for b in _union_branches(sp.expression)]


@cache
def _compiled(expr: str) -> Callable[..., list[Any]]:
    fn: Callable[..., list[Any]] = fhirpathpy.compile(expr, MODEL)
    return fn


def oracle_values(sp: SearchParamDef, resource: dict[str, Any]) -> list[Any]:
    found: list[Any] = []
    for expr in oracle_expressions(sp, resource["resourceType"]):
        found.extend(_compiled(expr)(resource, {"resource": resource}))
    if sp.code in ("composition", "message") and resource["resourceType"] == "Bundle":
        found = [v for v in found if v.get("resourceType") in sp.targets]  # see extract.py
    return found


# ---------------------------------------------------------------------------------------------
# Reading oracle values


def _extension_value(value: Any) -> Any:
    if isinstance(value, dict) and "url" in value:
        keys = [k for k in value if k.startswith("value")]
        return value[keys[0]] if keys else None
    return value


def _parses_as_date(value: Any) -> bool:
    try:
        date_bounds(value)
    except (ValueError, TypeError):
        return False
    return True


def unsearchable(kind: str, value: Any) -> str | None:
    """Why no search could match this oracle value, or None when one should."""
    value = _extension_value(value)
    if value is None:
        return "extension without a value"
    if not isinstance(value, dict):
        return None if kind != "date" or _parses_as_date(value) else "free text, not a date"
    if kind == "reference" and not value.get("reference") and "resourceType" not in value:
        return None if (value.get("identifier") or {}).get("value") else "reference with no target"
    if kind == "token" and not any(value.get(k) for k in ("coding", "code", "system", "value", "text")):
        return "token with no code, system or text"
    no_dates = not value.get("event") and "boundsPeriod" not in value.get("repeat", {})
    if kind == "date" and "start" not in value and "end" not in value and no_dates:
        return "date element with no date"
    if kind == "quantity" and "value" not in value and "low" not in value and "high" not in value:
        return "quantity with no value (e.g. SampledData)"
    return None


def _oracle_keys(kind: str, values: list[Any]) -> set[Any] | None:
    """The comparable keys of the oracle's values, or None where the type has none we compare."""
    keys: set[Any] = set()
    for raw in values:
        value = _extension_value(raw)
        if value is None:
            continue
        if kind == "token":
            keys |= _token_keys(value)
        elif kind == "reference":
            keys |= _reference_keys(value)
        elif kind == "string":
            keys |= _string_keys(value)
        elif kind == "uri":
            keys.add(value)
        elif kind == "date" and isinstance(value, str) and _parses_as_date(value):
            keys.add(date_bounds(value)[0])
        elif kind in ("number", "quantity"):
            number = value.get("value") if isinstance(value, dict) else value
            if isinstance(number, int | float | Decimal) and not isinstance(number, bool):
                keys.add(float(number))
        elif kind not in ("date",):
            return None
    return keys


def _token_keys(value: Any) -> set[Any]:
    if isinstance(value, bool):
        return {"true" if value else "false"}
    if isinstance(value, str):
        return {value}
    if "coding" in value:
        return {c.get("code") for c in value["coding"] if c.get("code")}
    if "code" in value:
        return {value["code"]}
    return {value["value"]} if "value" in value else set()


def _reference_keys(value: Any) -> set[Any]:
    if isinstance(value, str):
        return {value.split("|")[0]}
    if "resourceType" in value:
        return {f"{value['resourceType']}/{value.get('id')}"}
    ref = value.get("reference")
    return {ref.split("/_history/")[0]} if ref else set()


def _string_keys(value: Any) -> set[Any]:
    if isinstance(value, str):
        return {fold(value)} if value.strip() else set()
    parts: set[Any] = set()
    # HumanName and Address: the parts search covers (search.html#string), not `use` or `type`.
    for key in (
        "family",
        "given",
        "prefix",
        "suffix",
        "text",
        "line",
        "city",
        "district",
        "state",
        "postalCode",
        "country",
    ):
        item = value.get(key)
        for text in item if isinstance(item, list) else [item]:
            if isinstance(text, str) and text.strip():
                parts.add(fold(text))
    return parts


def our_keys(kind: str, entries: list[IndexEntry]) -> set[Any]:
    keys: set[Any] = set()
    for e in entries:
        if isinstance(e, TokenEntry) and e.code is not None:
            keys.add(e.code)
        elif isinstance(e, ReferenceEntry) and (e.target_id or e.url):
            keys.add(f"{e.target_type}/{e.target_id}" if e.target_id else e.url)
        elif isinstance(e, StringEntry | UriEntry):
            keys.add(e.value)
        elif isinstance(e, DateEntry):
            keys.add(e.low)
        elif isinstance(e, NumberEntry | QuantityEntry):
            keys.add(e.value)
    return keys


# ---------------------------------------------------------------------------------------------
# One pass over every example


@dataclass
class Report:
    examples: int = 0
    checks: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    missing: list[str] = field(default_factory=list)  # the oracle found a value we did not index
    extra: list[str] = field(default_factory=list)  # we indexed what the oracle did not find
    differ: list[str] = field(default_factory=list)  # both found values, but different ones
    reasons: Counter[str] = field(default_factory=Counter)


def _check(report: Report, name: str, sp: SearchParamDef, resource: dict[str, Any], ours: list[Any]) -> None:
    values = oracle_values(sp, resource)
    report.checks += 1
    if (name, sp.code) in COMPOSITE_EXCEPTIONS:
        report.reasons[COMPOSITE_EXCEPTIONS[(name, sp.code)]] += 1
        return
    if bool(values) == bool(ours):
        report.counts["agree: value" if ours else "agree: none"] += 1
        if ours and sp.type != "composite":
            _compare_values(report, name, sp, values, ours)
        return
    if ours:
        report.extra.append(f"{name} {sp.code}: {ours[:2]}")
        return
    reasons = {unsearchable(sp.type, v) for v in values}
    if sp.type == "composite":
        reasons = {"a component has only text, or a value of another type"}
    if None in reasons:
        report.missing.append(f"{name} {sp.code}: oracle {str(values)[:160]}")
    else:
        report.reasons.update(r for r in reasons if r)


def _compare_values(
    report: Report, name: str, sp: SearchParamDef, values: list[Any], ours: list[Any]
) -> None:
    expected = _oracle_keys(sp.type, values)
    if expected is None:
        return
    got = our_keys(sp.type, ours)
    # Dates and quantities: ours also holds Period/Range values the oracle keys leave out.
    ok = expected <= got if sp.type in ("date", "number", "quantity") else expected == got
    report.counts["values compared"] += 1
    if not ok:
        report.differ.append(
            f"{name} {sp.code}: oracle {sorted(map(str, expected))} ours {sorted(map(str, got))}"
        )


@pytest.fixture(scope="module")
def report() -> Report:
    registry = get_registry()
    result = Report()
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = json.loads(path.read_text())
        if resource["resourceType"] not in registry.resource_types():
            continue
        result.examples += 1
        by_param: dict[str, list[IndexEntry]] = defaultdict(list)
        for entry in extract_entries(resource):
            by_param[entry.param].append(entry)
        for code, sp in registry.params_for(resource["resourceType"]).items():
            if sp.expression is not None:
                _check(result, path.stem, sp, resource, by_param.get(code, []))
    print(
        f"\noracle: {result.examples} examples, {result.checks} (example, parameter) checks: "
        f"{dict(result.counts)}; oracle-only values no search could match: {dict(result.reasons)}"
    )
    return result


def test_every_example_is_checked(report: Report) -> None:
    """All official examples of registry types take part, each against all its parameters."""
    assert report.examples == len(list(EXAMPLES.glob("*.json")))
    assert report.counts["agree: value"] > 6000


def test_every_searchable_value_the_oracle_finds_is_indexed(report: Report) -> None:
    assert report.missing == []


def test_nothing_is_indexed_where_the_oracle_finds_no_value(report: Report) -> None:
    assert report.extra == []


def test_indexed_values_are_the_oracles(report: Report) -> None:
    """Token codes, reference targets, folded strings, uris, date lows and numbers agree."""
    assert report.counts["values compared"] > 5000
    assert report.differ == []
