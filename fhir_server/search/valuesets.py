"""The codes of a ValueSet, for token `:in` / `:not-in`. https://hl7.org/fhir/R4/valueset.html

Only content that is enumerated can be used without a terminology service: an `expansion`, or a
`compose` whose includes list concepts or take a whole code system. Filters, imported value sets and
excludes need real expansion, so those value sets are refused (None), never half-applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fhir_server.search.parse import ValueSetCodes


def value_set_codes(value_set: Mapping[str, Any]) -> ValueSetCodes | None:
    """(system, code) pairs (code None: every code of the system), or None if not enumerable."""
    expansion = value_set.get("expansion")
    if isinstance(expansion, Mapping) and expansion.get("contains"):
        return tuple(dict.fromkeys(_contains(expansion["contains"])))
    compose = value_set.get("compose")
    if not isinstance(compose, Mapping) or compose.get("exclude") or not compose.get("include"):
        return None
    found: list[tuple[str, str | None]] = []
    for include in compose["include"]:
        codes = _include(include)
        if codes is None:
            return None
        found += codes
    return tuple(dict.fromkeys(found))


def _contains(items: Iterable[Mapping[str, Any]]) -> Iterable[tuple[str, str | None]]:
    for item in items:
        if item.get("system") and item.get("code") and not item.get("abstract"):
            yield str(item["system"]), str(item["code"])
        yield from _contains(item.get("contains") or ())


def _include(include: Mapping[str, Any]) -> list[tuple[str, str | None]] | None:
    system = include.get("system")
    if not system or include.get("filter") or include.get("valueSet"):
        return None
    concepts = include.get("concept")
    if concepts:
        return [(str(system), str(c["code"])) for c in concepts if c.get("code")]
    return [(str(system), None)]
