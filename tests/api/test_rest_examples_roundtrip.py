"""Every official R4 example the R4B models accept round-trips through the HTTP API.

create -> read equal (apart from id and meta) -> update -> vread both -> history lists both ->
delete -> 410. The R4B models are the independent oracle for which examples count.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from tests.conftest import EXAMPLES

pytestmark = pytest.mark.slow
TAG = {"system": "http://example.org/fhir/tags", "code": "round-trip"}


def accepted_by_models() -> list[dict[str, Any]]:
    """The examples the R4B models parse (the oracle; our validator must accept all of these)."""
    accepted = []
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = orjson.loads(path.read_bytes())
        try:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        except Exception:
            continue
        accepted.append(resource)
    return accepted


def without_server_parts(resource: dict[str, Any]) -> dict[str, Any]:
    copy = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        copy["meta"] = meta
    return copy


async def round_trip(client: httpx.AsyncClient, resource: dict[str, Any]) -> str | None:
    """None when every step behaves; otherwise what went wrong."""
    kind = resource["resourceType"]
    created = await client.post(kind, json=resource)
    if created.status_code != 201:
        return f"create {created.status_code}: {created.text[:300]}"
    rid = created.json()["id"]
    read = (await client.get(f"{kind}/{rid}")).json()
    if without_server_parts(read) != without_server_parts(resource):
        return "read differs from what was sent"
    changed = {**read, "meta": {**read.get("meta", {}), "tag": [*read.get("meta", {}).get("tag", []), TAG]}}
    updated = await client.put(f"{kind}/{rid}", json=changed)
    if updated.status_code != 200 or updated.json()["meta"]["versionId"] != "2":
        return f"update {updated.status_code}: {updated.text[:300]}"
    first = await client.get(f"{kind}/{rid}/_history/1")
    second = await client.get(f"{kind}/{rid}/_history/2")
    if (
        without_server_parts(first.json()) != without_server_parts(resource)
        or TAG not in second.json()["meta"]["tag"]
    ):
        return "vread of the two versions differs"
    history = (await client.get(f"{kind}/{rid}/_history")).json()
    if [e["resource"]["meta"]["versionId"] for e in history["entry"]] != ["2", "1"]:
        return "history does not list both versions, newest first"
    if (await client.delete(f"{kind}/{rid}")).status_code != 204 or (
        await client.get(f"{kind}/{rid}")
    ).status_code != 410:
        return "delete did not lead to 410 Gone"
    return None


async def test_every_accepted_official_example_round_trips(app_client: httpx.AsyncClient) -> None:
    examples = accepted_by_models()
    failures = {}
    for resource in examples:
        problem = await round_trip(app_client, resource)
        if problem:
            failures[f"{resource['resourceType']}/{resource.get('id')}"] = problem
    print(f"\nround-tripped {len(examples) - len(failures)} of {len(examples)} official examples")
    assert len(examples) == 686
    assert failures == {}
