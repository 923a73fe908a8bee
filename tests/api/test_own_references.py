"""References written as absolute URLs to this server's own base are stored relative, so searches,
compartments and includes treat them as the relative references they equal (search.html#reference:
"A relative reference resolving to the same value as a specified absolute URL ... qualifies").
Every way in: create, update, patch, transactions (small and planned in workers), the importer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_server.app import create_app
from fhir_server.importer import import_resources
from fhir_server.rest.writes import relative_references
from fhir_server.settings import Settings
from fhir_server.storage.sqlite import SqliteStore
from tests.conftest import BASE

Json = dict[str, Any]
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def obs(id: str, subject: str) -> Json:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": subject},
    }


async def ids(client: httpx.AsyncClient, url: str, **params: str) -> list[str]:
    response = await client.get(url, params=params)
    assert response.status_code == 200, response.text
    return sorted(e["resource"]["id"] for e in response.json().get("entry", []))


async def test_a_reference_to_our_own_base_is_stored_relative_and_found(
    app_client: httpx.AsyncClient,
) -> None:
    """PUT with `[base]/Patient/p1`: stored as `Patient/p1`, and every search form finds it."""
    await app_client.put("Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    written = await app_client.put("Observation/o1", json=obs("o1", f"{BASE}/Patient/p1"))
    assert written.json()["subject"] == {"reference": "Patient/p1"}
    await app_client.put("Observation/o2", json=obs("o2", "http://other.example/fhir/Patient/p1"))
    for query in ({"subject": "Patient/p1"}, {"subject": "p1"}, {"subject": f"{BASE}/Patient/p1"}):
        assert await ids(app_client, "Observation", **query) == ["o1"]
    assert await ids(app_client, "Patient/p1/Observation") == ["o1"]
    included = await ids(app_client, "Observation", _id="o1", _include="Observation:subject")
    assert included == ["o1", "p1"]
    assert await ids(app_client, "Patient", _id="p1", _revinclude="Observation:subject") == ["o1", "p1"]


async def test_create_patch_and_transactions_store_own_references_relative(
    app_client: httpx.AsyncClient,
) -> None:
    await app_client.put("Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    created = await app_client.post("Observation", json=obs("ignored", f"{BASE}/Patient/p1/_history/1"))
    assert created.json()["subject"] == {"reference": "Patient/p1/_history/1"}
    await app_client.put("Observation/o2", json=obs("o2", "Patient/p9"))
    patch = [{"op": "replace", "path": "/subject/reference", "value": f"{BASE}/Patient/p1"}]
    patched = await app_client.patch(
        "Observation/o2", json=patch, headers={"Content-Type": "application/json-patch+json"}
    )
    assert patched.json()["subject"] == {"reference": "Patient/p1"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": obs("o3", f"{BASE}/Patient/p1"),
                "request": {"method": "PUT", "url": "Observation/o3"},
            },
            {"resource": obs("x", f"{BASE}/Patient/p1"), "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    response = await app_client.post("", json=bundle)
    assert response.status_code == 200, response.text
    assert len(await ids(app_client, "Observation", subject="Patient/p1")) == 4


async def test_a_large_transaction_planned_in_workers_does_the_same(app_client: httpx.AsyncClient) -> None:
    from fhir_server.rest.bundle import PARALLEL_FROM

    entries = [
        {"resource": obs(f"n{i}", f"{BASE}/Patient/p1"), "request": {"method": "POST", "url": "Observation"}}
        for i in range(PARALLEL_FROM)
    ]
    response = await app_client.post(
        "", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
    )
    assert response.status_code == 200, response.text
    found = await app_client.get("Observation", params={"subject": "Patient/p1", "_total": "accurate"})
    assert found.json()["total"] == PARALLEL_FROM


async def test_without_a_configured_base_the_requests_own_base_counts(tmp_path: Path) -> None:
    """--no-auth dev mode may run without a base URL: the base the request came to is ours."""
    app = create_app(Settings(data_dir=tmp_path, auth=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080/fhir/") as client:
            own = obs("o1", "http://127.0.0.1:8080/fhir/Patient/p1")
            assert (await client.put("Observation/o1", json=own)).json()["subject"][
                "reference"
            ] == "Patient/p1"


async def test_references_survive_a_move_to_another_base(tmp_path: Path) -> None:
    """Stored relative, the references still resolve when the server is served from a new base."""
    for base in ("http://old.example/fhir", "https://new.example:8443/fhir"):
        app = create_app(Settings(data_dir=tmp_path, auth=False, base_url=base))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=base + "/") as client:
                if base.startswith("http://old"):
                    await client.put("Patient/p1", json={"resourceType": "Patient", "id": "p1"})
                    await client.put("Observation/o1", json=obs("o1", f"{base}/Patient/p1"))
                assert await ids(client, "Patient/p1/Observation") == ["o1"]
                body = (await client.get("Observation", params={"_include": "Observation:subject"})).json()
                assert body["entry"][1]["fullUrl"] == f"{base}/Patient/p1"


@pytest.mark.parametrize("workers", [0, 2])
async def test_the_importer_makes_references_to_its_base_relative(tmp_path: Path, workers: int) -> None:
    """Given the base the store will be served from; without one, references stay as written."""
    store = SqliteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        mine, theirs = obs("o1", f"{BASE}/Patient/p1"), obs("o2", f"{BASE}/Patient/p2")
        await import_resources(store, [mine], base_url=BASE, workers=workers)
        await import_resources(store, [theirs], workers=workers)
        o1, o2 = await store.read("Observation", "o1"), await store.read("Observation", "o2")
        assert o1 is not None and o2 is not None
        assert orjson.loads(o1.body)["subject"] == {"reference": "Patient/p1"}
        assert orjson.loads(o2.body)["subject"] == {"reference": f"{BASE}/Patient/p2"}
    finally:
        await store.close()


def test_only_references_to_resources_on_our_base_change() -> None:
    resource = {
        "resourceType": "Observation",
        "subject": {"reference": f"{BASE}/Patient/p1"},
        "focus": [{"reference": f"{BASE}/metadata"}, {"reference": f"{BASE}x/Patient/p1"}],
        "derivedFrom": [{"reference": "Observation/o9"}],
        "note": [{"text": f"{BASE}/Patient/p1"}],
    }
    out = relative_references(resource, BASE)
    assert out["subject"] == {"reference": "Patient/p1"}
    assert out["focus"] == resource["focus"] and out["note"] == resource["note"]
    assert out["derivedFrom"] is resource["derivedFrom"]  # untouched parts are not copied
    assert relative_references({"resourceType": "Patient"}, BASE) == {"resourceType": "Patient"}
    document = {
        "resourceType": "Bundle",
        "entry": [{"resource": {"subject": {"reference": f"{BASE}/Patient/p1"}}}],
    }
    assert relative_references(document, BASE) is document  # a document keeps what it says
