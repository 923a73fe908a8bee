"""Every official R4 example is found by each of its search parameters that has a value.

For each (resource type, parameter) pair, the first example with an index entry for it is searched
for with a query string built from that entry (as a client would write it), and must come back.
Covers every parameter type the registry extracts, through the real store and the real parser.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_server.indexing.entries import (
    MAX_INSTANT,
    MIN_INSTANT,
    CompositeEntry,
    DateEntry,
    IndexEntry,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
    is_range,
)
from fhir_server.indexing.extract import extract_entries, patient_compartments
from fhir_server.search.parse import parse_search
from fhir_server.search.values import escape
from fhir_server.storage.port import Store, WriteOp
from fhir_server.validation import supported_types

EXAMPLES = Path(__file__).parents[1] / "fixtures" / "fhir-r4-examples"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _examples() -> Iterator[dict[str, Any]]:
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = orjson.loads(path.read_bytes())
        if resource.get("resourceType") in supported_types() and resource.get("id"):
            yield resource


def _instant(micros: int) -> str:
    moment = _EPOCH + timedelta(microseconds=micros - micros % 1_000_000)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: float) -> str | None:
    return repr(value) if value not in (float("inf"), float("-inf")) and value == value else None


def _value(entry: IndexEntry) -> tuple[str, str] | None:
    """(modifier suffix, value) a client would send to find `entry`, or None if it has no query."""
    if isinstance(entry, TokenEntry):
        if entry.code is None:
            return (":text", escape(entry.text)) if entry.text else None
        if entry.param.endswith(":of-type"):  # code is "typeCode|value": two parts of the query
            return "", f"{escape(entry.system or '')}|{entry.code}"
        return "", f"{escape(entry.system or '')}|{escape(entry.code)}" if entry.system else escape(
            entry.code
        )
    if isinstance(entry, StringEntry):
        first_word = entry.value.split(" ")[0]
        return ("", escape(first_word)) if first_word else None
    if isinstance(entry, DateEntry):
        if entry.low > MIN_INSTANT:
            return "", "ge" + _instant(entry.low)
        return ("", "lt" + _instant(entry.high - 1 + 1_000_000)) if entry.high < MAX_INSTANT else None
    if isinstance(entry, NumberEntry | QuantityEntry):
        number = _number(entry.value)
        if number is not None and is_range(entry.value, entry.low, entry.high):
            # A Range is not equal to its end (search.html#number): from that end on, it is there.
            return "", ("ge" if entry.value == entry.low else "le") + number
        return ("", number) if number is not None else None
    if isinstance(entry, ReferenceEntry):
        return _reference(entry)
    if isinstance(entry, UriEntry):
        return "", escape(entry.value)
    return _composite(entry)


def _reference(entry: ReferenceEntry) -> tuple[str, str] | None:
    if entry.target_type and entry.target_id:
        return "", f"{entry.target_type}/{entry.target_id}"
    if entry.url and not entry.url.startswith("#"):  # contained references are not searchable
        return "", escape(entry.url)
    if entry.identifier_value:
        return ":identifier", f"{escape(entry.identifier_system or '')}|{escape(entry.identifier_value)}"
    return None


def _composite(entry: CompositeEntry) -> tuple[str, str] | None:
    parts = []
    for component in entry.components:
        if isinstance(component, DateEntry):
            return None  # a composite part takes no range prefix we can build exactly; skip
        found = _value(component)
        if found is None or found[0]:
            return None
        parts.append(found[1])
    return "", "$".join(parts)


def _queries(resources: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(type, param) -> (id, parameter name, value) for the first example with a usable entry."""
    wanted: dict[tuple[str, str], tuple[str, str, str]] = {}
    for resource in resources:
        for entry in extract_entries(resource):
            key = (resource["resourceType"], entry.param)
            found = None if key in wanted else _value(entry)
            if found is not None:
                wanted[key] = (resource["id"], entry.param + found[0], found[1])
    return wanted


def _op(resource: dict[str, Any]) -> WriteOp:
    entries = extract_entries(resource)
    return WriteOp(
        resource["resourceType"],
        resource["id"],
        0,
        datetime(2026, 1, 1, tzinfo=UTC),
        orjson.dumps(resource),
        entries,
        patient_compartments(resource, entries),
    )


@pytest.mark.slow
async def test_every_parameter_with_a_value_finds_its_example(store: Store) -> None:
    resources = list(_examples())
    await store.write([_op(r) for r in resources])
    missed: list[str] = []
    queries = _queries(resources)
    for (resource_type, _), (id, name, value) in sorted(queries.items()):
        params = [(name, value), ("_count", "1000"), ("_total", "none")]
        page = await store.search(parse_search(resource_type, params).query)
        if id not in {m.id for m in page.matches}:
            missed.append(f"{resource_type}/{id}: {name}={value}")
    assert len(queries) > 1000
    assert missed == [], "\n".join(missed)
