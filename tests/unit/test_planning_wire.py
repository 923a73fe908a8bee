"""What crosses between the importer and its worker processes: packed index entries, pickled
WriteOps, and NDJSON lines routed by their start without being parsed."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_server import jsonio
from fhir_server.indexing.entries import pack_entries, unpack_entries
from fhir_server.indexing.extract import extract_entries
from fhir_server.rest.planning import Item, PlanError, Planner, plan_items
from fhir_server.rest.writes import plan_put
from fhir_server.storage.port import WriteOp
from fhir_server.validation import supported_types

EXAMPLES = Path(__file__).parents[1] / "fixtures" / "fhir-r4-examples"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _examples() -> list[dict[str, object]]:
    found = [orjson.loads(p.read_bytes()) for p in sorted(EXAMPLES.glob("*.json"))]
    return [r for r in found if r.get("resourceType") in supported_types()]


def test_packed_entries_of_every_official_example_unpack_equal() -> None:
    """Every entry kind, composites included, survives the packed form unchanged and in order."""
    kinds: set[str] = set()
    for resource in _examples():
        entries = extract_entries(resource, canonical_quantities=True)
        assert unpack_entries(pack_entries(entries)) == entries, resource.get("id")
        kinds.update(type(e).__name__ for e in entries)
    assert len(kinds) == 8  # all of TokenEntry ... CompositeEntry were exercised


def test_a_pickled_write_op_is_equal_to_the_original() -> None:
    resource = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-20",
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    op = plan_put(resource, "o1", 0, NOW, method="POST")
    again = pickle.loads(pickle.dumps(op))
    assert isinstance(again, WriteOp) and again == op
    tombstone = WriteOp("Patient", "p", 3, NOW, None, method="DELETE")
    assert pickle.loads(pickle.dumps(tombstone)) == tombstone


@pytest.mark.parametrize(
    ("line", "head"),
    [
        (b'{"resourceType":"Patient","id":"p-1","active":true}', ("Patient", "p-1")),
        (b'  { "resourceType" : "Observation" , "id" : "a.b" }\n', ("Observation", "a.b")),
        (b'{"id":"p","resourceType":"Patient"}', None),  # not first: the line must be parsed
        (b'{"resourceType":"Patient","active":true}', None),  # no id
        (b'{"resourceType":"Patient","id":"bad id"}', None),  # not an id: let validation say so
        (b"not json", None),
    ],
)
def test_head_of_a_line(line: bytes, head: tuple[str, str] | None) -> None:
    assert jsonio.head_of(line) == head


def test_a_line_is_planned_like_the_resource_it_holds() -> None:
    resource = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-02-03", "active": True}
    line = orjson.dumps(resource)
    [from_line] = plan_items([(line, "p1", 0)], NOW)
    [from_dict] = plan_items([(resource, "p1", 0)], NOW)
    assert isinstance(from_line, WriteOp) and from_line == from_dict


def test_a_decimal_on_a_line_keeps_its_precision() -> None:
    line = (
        b'{"resourceType":"Observation","id":"o","status":"final","code":{"text":"t"},'
        b'"valueQuantity":{"value":0.10}}'
    )
    [planned] = plan_items([(line, "o", 0)], NOW)
    assert isinstance(planned, WriteOp) and planned.body is not None
    assert b'"value":0.10' in planned.body


def test_a_line_whose_start_and_content_disagree_is_refused() -> None:
    """A repeated key makes the parsed id differ from the one the line was routed by."""
    line = b'{"resourceType":"Patient","id":"p1","active":true,"id":"p2"}'
    [planned] = plan_items([(line, "p1", 0)], NOW)
    assert isinstance(planned, PlanError)
    assert planned.status == 400 and "p1" in planned.message


def test_a_line_that_is_not_json_is_refused() -> None:
    [planned] = plan_items([(b'{"resourceType":"Patient","id":"p1",', "p1", 0)], NOW)
    assert isinstance(planned, PlanError) and "not valid JSON" in planned.message


@pytest.mark.parametrize("workers", [2, 3])
async def test_the_planner_answers_each_item_in_its_place(workers: int) -> None:
    """Items are shared among the worker processes; the answers come back in the items' order, a
    refused item's PlanError in its own place."""
    items: list[Item] = []
    for n in range(8):
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "id": f"p{n}",
            "birthDate": f"19{50 + n}-01-01",
        }
        if n == 5:
            resource["birthDate"] = "not a date"
        items.append((resource, f"p{n}", 0))
    planner = Planner(workers)
    try:
        planned = await planner.plan(items, NOW)
        few = await planner.plan(items[:1], NOW)  # fewer items than workers
    finally:
        planner.close()
    assert [p.where if isinstance(p, PlanError) else p.id for p in planned] == [
        f"Patient/p{n}" if n == 5 else f"p{n}" for n in range(8)
    ]
    assert [orjson.loads(p.body or b"")["birthDate"] for p in planned if isinstance(p, WriteOp)] == [
        f"19{50 + n}-01-01" for n in range(8) if n != 5
    ]
    assert len(few) == 1 and isinstance(few[0], WriteOp) and few[0].id == "p0"
