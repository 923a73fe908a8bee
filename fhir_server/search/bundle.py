"""Searchset Bundles. https://hl7.org/fhir/R4/bundle.html#searchset · https://hl7.org/fhir/R4/search.html

Hot path: with no `_summary`/`_elements`, each stored body is spliced into the Bundle as the bytes
it was stored as, never parsed. Only subsetting parses (and marks the result SUBSETTED, as
https://hl7.org/fhir/R4/search.html#summary asks), with jsonio so that decimals keep the precision
they were written with (0.10 stays 0.10), at about twice the cost of an orjson parse.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server import jsonio
from fhir_server.search.parse import Ignored
from fhir_server.search.query import SearchPage
from fhir_server.storage.port import StoredResource

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = ("resourceType", "id", "meta")


@dataclass(frozen=True, slots=True)
class Links:
    """Where the search lives (`path` relative to the base) and the parameters to repeat in links."""

    base_url: str
    path: str  # "", "Observation", "Patient/1/Observation", "Patient/1/$everything"
    params: tuple[tuple[str, str], ...]  # used parameters, without _count / _offset / _cursor
    count: int
    offset: int
    count_given: bool
    cursor: str | None = None  # this page's own `_cursor`, as the request gave it

    def url(self, params: Sequence[tuple[str, str]]) -> str:
        where = f"{self.base_url}/{self.path}" if self.path else self.base_url
        return f"{where}?{urlencode(params)}" if params else where

    def page(self, offset: int) -> list[tuple[str, str]]:
        paged = [*self.params, ("_count", str(self.count))]
        return [*paged, ("_offset", str(offset))] if offset else paged

    def bundle_links(self, next_offset: int | None, next_cursor: str | None = None) -> list[dict[str, str]]:
        own = [*self.params, *([("_count", str(self.count))] if self.count_given else [])]
        mine = [("_cursor", self.cursor)] if self.cursor else []
        links = [{"relation": "self", "url": self.url([*own, *self._offset(self.offset), *mine])}]
        if next_offset is not None:
            after = [("_cursor", next_cursor)] if next_cursor is not None else []
            links.append({"relation": "next", "url": self.url([*self.page(next_offset), *after])})
        if self.offset > 0 and self.count > 0:
            links.append(
                {"relation": "previous", "url": self.url(self.page(max(0, self.offset - self.count)))}
            )
        return links

    @staticmethod
    def _offset(offset: int) -> list[tuple[str, str]]:
        return [("_offset", str(offset))] if offset else []


def searchset(
    page: SearchPage,
    links: Links,
    *,
    summary: str | None = None,
    elements: tuple[str, ...] | None = None,
    ignored: Iterable[Ignored] = (),
) -> bytes:
    """The whole Bundle as JSON bytes."""
    head: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")},
        "type": "searchset",
    }
    if page.total is not None:
        head["total"] = page.total
    head["link"] = links.bundle_links(page.next_offset, page.cursor)
    entries = [_entry(links.base_url, s, b"match", summary, elements) for s in page.matches]
    # search.html#elements: "The list of elements does not apply to included resources"
    entries += [_entry(links.base_url, s, b"include", summary, None) for s in page.included]
    outcome = _outcome_entry(list(ignored))
    if outcome is not None:
        entries.append(outcome)
    if not entries:
        return orjson.dumps(head)  # FHIR JSON has no empty arrays
    start = orjson.dumps(head)[:-1]  # open the object again to append "entry"
    return start + b',"entry":[' + b",".join(entries) + b"]}"


def _entry(
    base_url: str, stored: StoredResource, mode: bytes, summary: str | None, elements: tuple[str, ...] | None
) -> bytes:
    full_url = orjson.dumps(f"{base_url}/{stored.resource_type}/{stored.id}")
    body = stored.body
    if summary is not None or elements is not None:
        body = jsonio.dumps(subset(jsonio.loads(body), summary, elements))  # decimals kept exact
    return b'{"fullUrl":' + full_url + b',"resource":' + body + b',"search":{"mode":"' + mode + b'"}}'


def _outcome_entry(ignored: list[Ignored]) -> bytes | None:
    """Lenient handling: an OperationOutcome entry (search.mode `outcome`) naming what was ignored."""
    if not ignored:
        return None
    issues = [
        {"severity": "warning", "code": "not-supported", "diagnostics": i.reason, "expression": [i.name]}
        for i in ignored
    ]
    entry = {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": {"resourceType": "OperationOutcome", "issue": issues},
        "search": {"mode": "outcome"},
    }
    return orjson.dumps(entry)


# -- _summary / _elements ------------------------------------------------------------------------


@cache
def _element_sets() -> dict[str, dict[str, list[str]]]:
    text = resources.files("fhir_server.search").joinpath("data/elements.json").read_text()
    data: dict[str, dict[str, list[str]]] = json.loads(text)
    return data


def subset(resource: dict[str, Any], summary: str | None, elements: tuple[str, ...] | None) -> dict[str, Any]:
    """The resource cut down to what `_summary` / `_elements` ask for, tagged SUBSETTED."""
    sets = _element_sets().get(str(resource.get("resourceType")), {"summary": [], "mandatory": []})
    if elements is not None:
        keep = {*_ALWAYS, *sets["mandatory"], *elements}
    elif summary == "true":
        keep = {*_ALWAYS, *sets["summary"]}
    elif summary == "text":
        keep = {*_ALWAYS, "text", *sets["mandatory"]}
    elif summary == "data":
        keep = {key for key in resource if key not in ("text", "_text")}
    else:
        return resource
    out = {key: value for key, value in resource.items() if _kept(key, keep)}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return out


def _kept(key: str, keep: set[str]) -> bool:
    """`key` is kept if named, or is a choice (`valueQuantity` for `value[x]`), or a primitive's
    `_key` extension sibling."""
    name = key[1:] if key.startswith("_") and key != "_" else key
    if name in keep:
        return True
    return any(
        k.endswith("[x]") and name.startswith(k[:-3]) and name[len(k) - 3 : len(k) - 2].isupper()
        for k in keep
    )
