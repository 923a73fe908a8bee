"""Batch and transaction Bundles. https://hl7.org/fhir/R4/http.html#transaction"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson

from tests.conftest import example


def entry(method: str, url: str, resource: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"request": {"method": method, "url": url, **extra.pop("request", {})}, **extra}
    if resource is not None:
        item["resource"] = resource
    return item


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def observation(subject: str, status: str = "final") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": subject},
        "valueQuantity": {
            "value": 72,
            "unit": "beats/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


async def count(client: httpx.AsyncClient, path: str = "_history") -> int:
    return int((await client.get(path)).json()["total"])


async def test_transaction_resolves_urn_uuid_references(app_client: httpx.AsyncClient) -> None:
    """An entry may reference another by its urn:uuid fullUrl; the server rewrites it to Type/id."""
    patient_urn = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"
    response = await app_client.post(
        "",
        json=bundle(
            "transaction",
            entry("POST", "Observation", observation(patient_urn)),
            entry("POST", "Patient", {"resourceType": "Patient", "active": True}, fullUrl=patient_urn),
        ),
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    obs_entry, patient_entry = result["entry"]
    assert obs_entry["response"]["status"] == "201 Created"
    patient_id = patient_entry["resource"]["id"]
    assert obs_entry["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
    assert patient_entry["response"]["location"].startswith(f"Patient/{patient_id}/_history/1")
    stored = (await app_client.get(obs_entry["response"]["location"].rsplit("/_history", 1)[0])).json()
    assert stored["subject"]["reference"] == f"Patient/{patient_id}"


async def test_transaction_with_one_invalid_entry_changes_nothing(app_client: httpx.AsyncClient) -> None:
    await app_client.put("Patient/keep", json={"resourceType": "Patient", "id": "keep", "active": True})
    before = await count(app_client)
    response = await app_client.post(
        "",
        json=bundle(
            "transaction",
            entry("POST", "Patient", {"resourceType": "Patient", "active": True}),
            entry("PUT", "Patient/keep", {"resourceType": "Patient", "id": "keep", "active": False}),
            entry("DELETE", "Patient/keep"),
            entry("POST", "Observation", observation("Patient/keep", status="bogus")),
        ),
    )
    assert response.status_code in (400, 422)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any("Bundle.entry[3]" in " ".join(i.get("expression", [])) for i in outcome["issue"])
    assert await count(app_client) == before
    assert (await app_client.get("Patient/keep")).json()["active"] is True


async def test_transaction_touching_one_resource_twice_is_refused(app_client: httpx.AsyncClient) -> None:
    await app_client.put("Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    response = await app_client.post(
        "",
        json=bundle(
            "transaction",
            entry("PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1", "active": True}),
            entry("DELETE", "Patient/p1"),
        ),
    )
    assert response.status_code == 400
    assert (await app_client.get("Patient/p1")).status_code == 200


async def test_transaction_runs_deletes_before_reads(app_client: httpx.AsyncClient) -> None:
    """GET entries run last, so they see the transaction's own writes."""
    await app_client.put("Patient/p2", json={"resourceType": "Patient", "id": "p2"})
    response = await app_client.post(
        "",
        json=bundle(
            "transaction",
            entry("GET", "Patient/p3"),
            entry("PUT", "Patient/p3", {"resourceType": "Patient", "id": "p3", "active": True}),
            entry("DELETE", "Patient/p2"),
        ),
    )
    assert response.status_code == 200, response.text
    read, put, delete = response.json()["entry"]
    assert read["resource"]["id"] == "p3"
    assert put["response"]["status"] == "201 Created"
    assert delete["response"]["status"] == "204 No Content"
    assert (await app_client.get("Patient/p2")).status_code == 410


async def test_transaction_if_match_conflict_is_412_and_changes_nothing(
    app_client: httpx.AsyncClient,
) -> None:
    await app_client.put("Patient/p4", json={"resourceType": "Patient", "id": "p4"})
    await app_client.put("Patient/p4", json={"resourceType": "Patient", "id": "p4", "active": True})
    response = await app_client.post(
        "",
        json=bundle(
            "transaction",
            entry("POST", "Patient", {"resourceType": "Patient"}),
            entry("PUT", "Patient/p4", {"resourceType": "Patient", "id": "p4"}, request={"ifMatch": 'W/"1"'}),
        ),
    )
    assert response.status_code == 412
    assert await count(app_client, "Patient/_history") == 2


async def test_transaction_patch_entry_with_binary(app_client: httpx.AsyncClient) -> None:
    await app_client.put("Patient/p5", json={"resourceType": "Patient", "id": "p5", "active": True})
    ops = orjson.dumps([{"op": "replace", "path": "/active", "value": False}])
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(ops).decode(),
    }
    response = await app_client.post("", json=bundle("transaction", entry("PATCH", "Patient/p5", binary)))
    assert response.status_code == 200, response.text
    assert (await app_client.get("Patient/p5")).json()["active"] is False


async def test_batch_reports_each_entry_on_its_own(app_client: httpx.AsyncClient) -> None:
    response = await app_client.post(
        "",
        json=bundle(
            "batch",
            entry("POST", "Patient", {"resourceType": "Patient"}),
            entry("GET", "Patient/does-not-exist"),
            entry("POST", "Observation", observation("Patient/x", status="bogus")),
        ),
    )
    assert response.status_code == 200
    created, missing, invalid = response.json()["entry"]
    assert created["response"]["status"] == "201 Created"
    assert missing["response"]["status"] == "404"
    assert missing["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert invalid["response"]["status"] == "422"
    assert await count(app_client, "Patient/_history") == 1


async def test_bundle_of_other_type_is_refused(app_client: httpx.AsyncClient) -> None:
    response = await app_client.post("", json={"resourceType": "Bundle", "type": "collection"})
    assert response.status_code == 400
    assert "batch" in response.json()["issue"][0]["diagnostics"]


async def test_official_transaction_example_fails_whole_on_an_empty_server(
    app_client: httpx.AsyncClient,
) -> None:
    """The spec's transaction example deletes Patient/234, which an empty server lacks: 404, nothing kept."""
    response = await app_client.post("", json=example("Bundle-bundle-transaction"))
    assert response.status_code == 404
    assert "Patient/234" in response.json()["issue"][0]["diagnostics"]
    assert await count(app_client) == 0


async def test_official_transaction_example_succeeds_when_its_preconditions_hold(
    app_client: httpx.AsyncClient,
) -> None:
    """With Patient/123a at version 2 and Patient/234 present, its write entries all succeed."""
    official = example("Bundle-bundle-transaction")
    official["entry"] = [e for e in official["entry"] if "$lookup" not in e["request"]["url"]]
    for _ in range(2):
        await app_client.put("Patient/123a", json={"resourceType": "Patient", "id": "123a"})
    await app_client.put("Patient/234", json={"resourceType": "Patient", "id": "234"})
    response = await app_client.post("", json=official)
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses[:7] == [
        "201 Created",
        "201 Created",
        "201 Created",
        "201 Created",
        "200 OK",
        "204 No Content",
        "204 No Content",
    ]
    assert (await app_client.get("Patient/234")).status_code == 410
    assert (await app_client.get("Patient/123a")).json()["meta"]["versionId"] == "3"


async def test_conditional_reference_resolves_to_the_one_match(app_client: httpx.AsyncClient) -> None:
    """A reference `Patient?identifier=...` in a transaction points at the single Patient it matches."""
    nhs = {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}
    await app_client.put(
        "Patient/known", json={"resourceType": "Patient", "id": "known", "identifier": [nhs]}
    )
    ref = "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018"
    response = await app_client.post(
        "", json=bundle("transaction", entry("POST", "Observation", observation(ref)))
    )
    assert response.status_code == 200, response.text
    assert response.json()["entry"][0]["resource"]["subject"]["reference"] == "Patient/known"


async def test_conditional_reference_without_a_single_match_fails_the_transaction(
    app_client: httpx.AsyncClient,
) -> None:
    for pid in ("twin-a", "twin-b"):
        await app_client.put(f"Patient/{pid}", json={"resourceType": "Patient", "id": pid, "gender": "other"})
    none = await app_client.post(
        "", json=bundle("transaction", entry("POST", "Observation", observation("Patient?gender=unknown")))
    )
    assert none.status_code == 412
    many = await app_client.post(
        "", json=bundle("transaction", entry("POST", "Observation", observation("Patient?gender=other")))
    )
    assert many.status_code == 412
    assert await count(app_client, "Observation/_history") == 0


def large_transaction(size: int, *, bad_at: int | None = None) -> dict[str, Any]:
    """A Patient and `size` Observations about it, by urn:uuid: big enough to use worker processes."""
    urn = "urn:uuid:0b9a1d8e-6f00-4c55-9e31-6d2a4c1f0001"
    entries = [entry("POST", "Patient", {"resourceType": "Patient", "active": True}, fullUrl=urn)]
    for n in range(size):
        entries.append(
            entry("POST", "Observation", observation(urn, status="bogus" if n == bad_at else "final"))
        )
    return bundle("transaction", *entries)


async def test_large_transaction_validated_in_worker_processes_is_all_written(
    app_client: httpx.AsyncClient,
) -> None:
    response = await app_client.post("", json=large_transaction(60))
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    patient_id = entries[0]["resource"]["id"]
    assert all(e["response"]["status"] == "201 Created" for e in entries)
    assert {e["resource"]["subject"]["reference"] for e in entries[1:]} == {f"Patient/{patient_id}"}
    assert await count(app_client, "Observation/_history") == 60


async def test_large_transaction_with_one_invalid_entry_changes_nothing(
    app_client: httpx.AsyncClient,
) -> None:
    response = await app_client.post("", json=large_transaction(60, bad_at=41))
    assert response.status_code == 422
    expressions = [x for issue in response.json()["issue"] for x in issue.get("expression", [])]
    assert "Bundle.entry[42].resource.status" in expressions
    assert await count(app_client) == 0


NHS_PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}],
}


NHS_CRITERIA = {"ifNoneExist": "identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018"}


async def post_twice_if_none_exist(client: httpx.AsyncClient, kind: str) -> list[dict[str, Any]]:
    """A Bundle of `kind` holding the same conditional create twice; the response's entries."""
    twice = [entry("POST", "Patient", NHS_PATIENT, request=NHS_CRITERIA)] * 2
    response = await client.post("", json=bundle(kind, *twice))
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entry"]
    return entries


async def test_batch_post_with_if_none_exist_creates_only_when_nothing_matches(
    app_client: httpx.AsyncClient,
) -> None:
    """request.ifNoneExist in a batch: the first entry creates, the second finds it (200, no copy)."""
    first, second = await post_twice_if_none_exist(app_client, "batch")
    assert first["response"]["status"] == "201 Created"
    assert second["response"]["status"] == "200 OK"
    assert (
        first["response"]["location"].split("/_history")[0]
        == second["response"]["location"].split("/_history")[0]
    )
    found = (await app_client.get("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018")).json()
    assert found["total"] == 1


async def test_transaction_if_none_exist_points_references_at_the_existing_resource(
    app_client: httpx.AsyncClient,
) -> None:
    """A matched ifNoneExist entry is not created, and references to its fullUrl go to the match."""
    existing = (await app_client.post("Patient", json=NHS_PATIENT)).json()
    patient_urn = "urn:uuid:0f6c6a4e-2d55-4c1b-9d59-7c2b1d0e5a11"
    response = await app_client.post(
        "",
        json=bundle(
            "transaction",
            entry("POST", "Patient", NHS_PATIENT, fullUrl=patient_urn, request=NHS_CRITERIA),
            entry("POST", "Observation", observation(patient_urn)),
        ),
    )
    assert response.status_code == 200, response.text
    patient_entry, obs_entry = response.json()["entry"]
    assert patient_entry["response"]["status"] == "200 OK"
    obs_id = obs_entry["response"]["location"].split("/")[-3]
    obs = (await app_client.get(f"Observation/{obs_id}")).json()
    assert obs["subject"]["reference"] == f"Patient/{existing['id']}"


async def test_a_transaction_with_two_alike_conditional_creates_commits(
    app_client: httpx.AsyncClient,
) -> None:
    """Both entries' conditions are judged before the transaction writes: it does not conflict
    with itself (the store re-checks them against other writers only)."""
    entries = await post_twice_if_none_exist(app_client, "transaction")
    assert [e["response"]["status"] for e in entries] == ["201 Created"] * 2
