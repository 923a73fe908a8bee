"""The codes of a ValueSet, for token `:in` / `:not-in`. https://hl7.org/fhir/R4/valueset.html

Only content that is enumerated can be used without a terminology service: an `expansion`, or a
`compose` whose includes list concepts or take a whole code system. Filters, imported value sets and
excludes need real expansion, so those value sets are refused (None), never half-applied.

Which ValueSet a canonical reference means (https://hl7.org/fhir/R4/references.html#canonical):
`url|version` the one with that version; a bare url the latest held (`pick_value_set`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fhir_server.digits import ascii_whole
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


def pick_value_set(candidates: Sequence[Mapping[str, Any]], version: str | None) -> Mapping[str, Any] | None:
    """Of the value sets sharing one canonical url: the one with `version`, or without a version
    asked for, the latest (`version_order`)."""
    if version is not None:
        return next((vs for vs in candidates if vs.get("version") == version), None)
    return max(candidates, key=version_order, default=None)


def version_order(value_set: Mapping[str, Any]) -> tuple[Any, ...]:
    """Latest = the highest `version`, compared piece by piece between `.`, `-` and `+`, numeric
    pieces as numbers ("1.10" after "1.9", "2" after "1.5"), others as text and after numbers; a
    value set without a version before any with one. Equal versions: the last updated (the stored
    `meta.lastUpdated`, all written by this server in one format)."""
    version = value_set.get("version")
    pieces = re.split(r"[.+-]", version) if isinstance(version, str) and version else []
    key = tuple((0, ascii_whole(p), "") if ascii_whole(p) is not None else (1, 0, p) for p in pieces)
    meta = value_set.get("meta")
    updated = meta.get("lastUpdated", "") if isinstance(meta, Mapping) else ""
    return (bool(pieces), key, str(updated))
