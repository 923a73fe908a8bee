"""Create, read, vread, update, delete and their headers, through HTTP. https://hl7.org/fhir/R4/http.html"""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import BASE, example

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def patient(family: str = "Smith", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family, "given": ["Jo"]}], **extra}


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> httpx.Response:
    response = await client.post(resource["resourceType"], json=resource, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return response


async def test_create_assigns_id_version_and_headers(app_client: httpx.AsyncClient) -> None:
    """A create answers 201 with a server id, Location, ETag W/"1" and Last-Modified."""
    response = await create(app_client, patient(id="ignored-by-server"))
    body = response.json()
    assert body["id"] != "ignored-by-server"
    assert body["meta"]["versionId"] == "1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"] == f"{BASE}/Patient/{body['id']}/_history/1"
    assert "last-modified" in response.headers
    assert response.headers["content-type"].startswith("application/fhir+json")


async def test_read_returns_what_was_stored(app_client: httpx.AsyncClient) -> None:
    created = (await create(app_client, patient())).json()
    read = await app_client.get(f"Patient/{created['id']}")
    assert read.status_code == 200
    assert read.json() == created
    assert read.headers["etag"] == 'W/"1"'


async def test_head_answers_like_get_without_a_body(app_client: httpx.AsyncClient) -> None:
    """HEAD on a read, a search, a missing resource and the CapabilityStatement: GET's status and
    headers, no body."""
    created = (await create(app_client, patient())).json()
    for path in (f"Patient/{created['id']}", "Patient?family=smith", "Patient/nobody", "metadata"):
        got, head = await app_client.get(path), await app_client.head(path)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers.get("etag") == got.headers.get("etag"), path
    assert (await app_client.head(f"Patient/{created['id']}")).headers["etag"] == 'W/"1"'


async def test_update_makes_version_two_and_vread_sees_both(app_client: httpx.AsyncClient) -> None:
    created = (await create(app_client, patient("Smith"))).json()
    pid = created["id"]
    updated = await app_client.put(f"Patient/{pid}", json=patient("Jones", id=pid))
    assert updated.status_code == 200
    assert updated.json()["meta"]["versionId"] == "2"
    first = await app_client.get(f"Patient/{pid}/_history/1")
    second = await app_client.get(f"Patient/{pid}/_history/2")
    assert first.json()["name"][0]["family"] == "Smith"
    assert second.json()["name"][0]["family"] == "Jones"


async def test_update_as_create_answers_201(app_client: httpx.AsyncClient) -> None:
    response = await app_client.put("Patient/chosen-id", json=patient(id="chosen-id"))
    assert response.status_code == 201
    assert response.json()["id"] == "chosen-id"
    assert response.headers["location"].endswith("/Patient/chosen-id/_history/1")


async def test_update_with_id_mismatch_is_400(app_client: httpx.AsyncClient) -> None:
    response = await app_client.put("Patient/a", json=patient(id="b"))
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_update_without_body_id_is_400(app_client: httpx.AsyncClient) -> None:
    response = await app_client.put("Patient/a", json=patient())
    assert response.status_code == 400


async def test_deleted_resource_answers_410_and_history_keeps_tombstone(
    app_client: httpx.AsyncClient,
) -> None:
    pid = (await create(app_client, patient())).json()["id"]
    deleted = await app_client.delete(f"Patient/{pid}")
    assert deleted.status_code == 204
    gone = await app_client.get(f"Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    history = (await app_client.get(f"Patient/{pid}/_history")).json()
    assert history["type"] == "history"
    assert history["total"] == 2
    assert history["entry"][0]["request"]["method"] == "DELETE"
    assert "resource" not in history["entry"][0]
    assert history["entry"][1]["resource"]["id"] == pid


async def test_resurrecting_a_deleted_resource_continues_its_versions(app_client: httpx.AsyncClient) -> None:
    pid = (await create(app_client, patient())).json()["id"]
    await app_client.delete(f"Patient/{pid}")
    again = await app_client.put(f"Patient/{pid}", json=patient(id=pid))
    assert again.status_code == 201
    assert again.json()["meta"]["versionId"] == "3"


async def test_unknown_id_is_404_unknown_type_is_404_bad_id_is_400(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("Patient/nope")).status_code == 404
    unknown_type = await app_client.get("Spaceship/1")
    assert unknown_type.status_code == 404
    assert "Spaceship" in unknown_type.json()["issue"][0]["diagnostics"]
    assert (await app_client.get("Patient/bad_id!")).status_code == 400


async def test_vread_of_missing_version_is_404(app_client: httpx.AsyncClient) -> None:
    pid = (await create(app_client, patient())).json()["id"]
    assert (await app_client.get(f"Patient/{pid}/_history/9")).status_code == 404
    assert (await app_client.get(f"Patient/{pid}/_history/x")).status_code == 404


async def test_if_match_with_stale_version_is_412(app_client: httpx.AsyncClient) -> None:
    pid = (await create(app_client, patient())).json()["id"]
    ok = await app_client.put(f"Patient/{pid}", json=patient(id=pid), headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200
    stale = await app_client.put(f"Patient/{pid}", json=patient(id=pid), headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert (await app_client.get(f"Patient/{pid}")).json()["meta"]["versionId"] == "2"


async def test_if_none_match_and_if_modified_since_answer_304(app_client: httpx.AsyncClient) -> None:
    created = await create(app_client, patient())
    pid = created.json()["id"]
    same = await app_client.get(f"Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert same.status_code == 304
    other = await app_client.get(f"Patient/{pid}", headers={"If-None-Match": 'W/"0"'})
    assert other.status_code == 200
    later = await app_client.get(
        f"Patient/{pid}", headers={"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}
    )
    assert later.status_code == 304
    earlier = await app_client.get(
        f"Patient/{pid}", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    assert earlier.status_code == 200


async def test_prefer_return_minimal_and_operation_outcome(app_client: httpx.AsyncClient) -> None:
    minimal = await app_client.post("Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert minimal.headers["location"]
    outcome = await app_client.post("Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"})
    assert outcome.status_code == 201
    assert outcome.json()["resourceType"] == "OperationOutcome"


async def test_xml_is_refused_clearly(app_client: httpx.AsyncClient) -> None:
    pid = (await create(app_client, patient())).json()["id"]
    by_param = await app_client.get(f"Patient/{pid}?_format=xml")
    assert by_param.status_code == 406
    assert "JSON" in by_param.json()["issue"][0]["diagnostics"]
    by_accept = await app_client.get(f"Patient/{pid}", headers={"Accept": "application/fhir+xml"})
    assert by_accept.status_code == 406
    xml_body = await app_client.post(
        "Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}
    )
    assert xml_body.status_code == 415


async def test_json_and_pretty_formats(app_client: httpx.AsyncClient) -> None:
    pid = (await create(app_client, patient())).json()["id"]
    plain = await app_client.get(f"Patient/{pid}", headers={"Accept": "application/json"})
    assert plain.headers["content-type"].startswith("application/json")
    pretty = await app_client.get(f"Patient/{pid}?_pretty=true")
    assert b"\n  " in pretty.content
    assert pretty.json() == plain.json()


async def test_invalid_resource_is_422_with_expression(app_client: httpx.AsyncClient) -> None:
    observation = example("Observation-example")
    observation["status"] = "bogus"
    response = await app_client.post("Observation", json=observation)
    assert response.status_code == 422
    issues = response.json()["issue"]
    assert any("Observation.status" in issue.get("expression", []) for issue in issues)


async def test_type_mismatch_and_malformed_json_are_400(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.post("Observation", json=patient())).status_code == 400
    broken = await app_client.post("Patient", content=b"{not json", headers=FHIR_JSON)
    assert broken.status_code == 400
    assert broken.json()["resourceType"] == "OperationOutcome"


async def test_json_patch(app_client: httpx.AsyncClient) -> None:
    pid = (await create(app_client, patient("Smith"))).json()["id"]
    ops = [{"op": "replace", "path": "/name/0/family", "value": "Patched"}]
    patched = await app_client.patch(
        f"Patient/{pid}",
        content=__import__("orjson").dumps(ops),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"][0]["family"] == "Patched"
    assert patched.json()["meta"]["versionId"] == "2"


async def test_json_patch_that_breaks_the_resource_is_refused(app_client: httpx.AsyncClient) -> None:
    pid = (await create(app_client, patient("Smith"))).json()["id"]
    import orjson

    headers = {"Content-Type": "application/json-patch+json"}
    bad_value = [{"op": "replace", "path": "/gender", "value": "robot"}]
    assert (
        await app_client.patch(f"Patient/{pid}", content=orjson.dumps(bad_value), headers=headers)
    ).status_code == 422
    id_change = [{"op": "replace", "path": "/id", "value": "other"}]
    assert (
        await app_client.patch(f"Patient/{pid}", content=orjson.dumps(id_change), headers=headers)
    ).status_code == 422
    failing_test = [{"op": "test", "path": "/name/0/family", "value": "Nope"}]
    assert (
        await app_client.patch(f"Patient/{pid}", content=orjson.dumps(failing_test), headers=headers)
    ).status_code == 422
    assert (await app_client.get(f"Patient/{pid}")).json()["meta"]["versionId"] == "1"


async def test_unknown_route_and_method_are_operation_outcomes(app_client: httpx.AsyncClient) -> None:
    response = await app_client.request("PATCH", "Patient")
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_validate_operation_stores_nothing(app_client: httpx.AsyncClient) -> None:
    good = await app_client.post("Patient/$validate", json=patient())
    assert good.status_code == 200
    assert good.json()["issue"][0]["severity"] == "information"
    bad = await app_client.post("Patient/$validate", json=patient(gender="robot"))
    assert bad.status_code == 200
    assert bad.json()["issue"][0]["severity"] == "error"
    history = (await app_client.get("Patient/_history")).json()
    assert history["total"] == 0


async def test_capability_statement_is_honest(app_client: httpx.AsyncClient) -> None:
    statement = (await app_client.get("metadata")).json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    types = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert "Patient" in types and "Observation" in types
    assert "MedicinalProduct" not in types  # an R4 type the R4B models lack
    names = {p["name"] for p in types["Observation"]["searchParam"]}
    assert {"code", "subject", "date", "patient"} <= names


async def test_decimal_precision_is_kept(app_client: httpx.AsyncClient) -> None:
    """FHIR decimals keep their precision: 0.10 is not 0.1, and 1.50e3 keeps three significant digits."""
    body = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
        b'"valueQuantity":{"value":0.10,"unit":"kg"},"referenceRange":[{"low":{"value":1.50e3}}]}'
    )
    created = await app_client.post("Observation", content=body, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    read = await app_client.get(f"Observation/{created.json()['id']}")
    assert b'"value":0.10' in read.content
    assert b'"value":1.50E+3' in read.content
    pretty = await app_client.get(f"Observation/{created.json()['id']}?_pretty=true")
    assert b'"value": 0.10' in pretty.content


async def test_nan_is_not_json(app_client: httpx.AsyncClient) -> None:
    body = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":NaN}}'
    )
    response = await app_client.post("Observation", content=body, headers=FHIR_JSON)
    assert response.status_code == 400


async def test_summary_and_elements_apply_to_read_and_vread(app_client: httpx.AsyncClient) -> None:
    """_summary/_elements cut a read down and tag it SUBSETTED; a plain read is the stored resource."""
    body = patient(
        "Smith",
        gender="female",
        birthDate="1970-01-01",
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Jo</div>'},
    )
    pid = (await create(app_client, body)).json()["id"]
    elements = (await app_client.get(f"Patient/{pid}?_elements=gender")).json()
    assert elements["gender"] == "female" and "name" not in elements and "birthDate" not in elements
    assert any(t.get("code") == "SUBSETTED" for t in elements["meta"]["tag"])
    summary = (await app_client.get(f"Patient/{pid}/_history/1?_summary=true")).json()
    assert summary["birthDate"] == "1970-01-01" and "text" not in summary
    data = (await app_client.get(f"Patient/{pid}?_summary=data")).json()
    assert "text" not in data and data["name"][0]["family"] == "Smith"
    assert (await app_client.get(f"Patient/{pid}?_summary=count")).status_code == 400
    plain = (await app_client.get(f"Patient/{pid}")).json()
    assert "text" in plain and "tag" not in plain["meta"]
