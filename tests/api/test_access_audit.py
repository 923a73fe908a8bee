"""Clinician and carer accesses leave an AuditEvent the patient can find; the trail is append-only."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from fhir_server.app import create_app
from fhir_server.settings import Settings
from tests.api.test_access_rules import BASE, DATA, TOKENS, auth, token, verify


@pytest.fixture
def app(tmp_path: object) -> FastAPI:
    app = create_app(Settings(data_dir=tmp_path, auth=True, base_url=BASE))  # type: ignore[arg-type]
    app.state.verify_token = verify
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http,
    ):
        entries = [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in DATA
        ]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        assert (await http.post("", json=bundle, headers=auth("system"))).status_code == 200
        yield http


async def events(http: httpx.AsyncClient) -> list[Any]:
    body = (await http.get("AuditEvent?_count=100", headers=auth("system"))).json()
    return [e["resource"] for e in body.get("entry", [])]


async def test_carer_read_is_audited_in_the_patients_compartment(client: httpx.AsyncClient) -> None:
    """The carer reads p1's observation; p1 finds an event naming the carer, the app and the request."""
    assert (await client.get("Observation/o1v", headers=auth("carer"))).status_code == 200
    [event] = await events(client)
    assert event["agent"][0]["who"] == {"reference": "RelatedPerson/rp1"}
    assert event["entity"][0]["what"] == {"reference": "Patient/p1"}
    assert event["entity"][0]["description"] == "GET /fhir/Observation/o1v"
    mine = (await client.get("AuditEvent", headers=auth("p1"))).json()
    assert [e["resource"]["id"] for e in mine["entry"]] == [event["id"]]


async def test_search_by_clinician_leaves_one_event_per_patient_returned(client: httpx.AsyncClient) -> None:
    """Each patient whose data the answer carried gets an event of their own, naming only them."""
    assert (await client.get("Patient", headers=auth("clinician"))).status_code == 200
    found = await events(client)
    assert sorted([e["what"]["reference"] for e in event["entity"]] for event in found) == [
        ["Patient/p1"],
        ["Patient/p2"],
    ]


async def mine(http: httpx.AsyncClient, who: str) -> list[Any]:
    body = (await http.get("AuditEvent?_count=100", headers=auth(who))).json()
    return [e["resource"] for e in body.get("entry", [])]


async def test_a_patients_event_names_no_other_patient_nor_the_query_values(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clinician's search across patients: p1 sees who looked, when, with which app and how
    (interaction, type, parameter names), but neither p2 nor the values searched for."""
    monkeypatch.setitem(TOKENS, "p2", token("patient", "patient/*.rs", fhir_user="Patient/p2", patient="p2"))
    found = await client.get("Patient?_count=50&name=Famp&_sort=_id", headers=auth("clinician"))
    assert [e["resource"]["id"] for e in found.json()["entry"]] == ["p1", "p2"]
    [event] = await mine(client, "p1")
    assert event["agent"][0]["who"] == {"reference": "Practitioner/d1"}
    assert event["agent"][1]["who"]["identifier"]["value"] == "app" and event["recorded"]
    assert event["entity"] == [
        {"what": {"reference": "Patient/p1"}, "description": "GET /fhir/Patient?_count&name&_sort"}
    ]
    # (the server's own values, random ids and clock readings, could hold "50" by chance)
    content = {k: v for k, v in event.items() if k not in ("id", "meta", "recorded")}
    text = orjson.dumps(content).decode()
    assert "p2" not in text and "Famp" not in text and "50" not in text
    [theirs] = await mine(client, "p2")
    assert (
        theirs["entity"][0]["what"] == {"reference": "Patient/p2"}
        and "p1" not in orjson.dumps(theirs).decode()
    )


async def test_a_carers_search_across_two_patients_shows_each_only_their_own(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Person per1 acts for p1 and p2: one search reaching both leaves p1 an event naming p1 alone."""
    monkeypatch.setitem(TOKENS, "p2", token("patient", "patient/*.rs", fhir_user="Patient/p2", patient="p2"))
    body = (await client.get("Observation?code:text=vital", headers=auth("person"))).json()
    assert sorted(e["resource"]["id"] for e in body["entry"]) == ["o1v", "o2v"]
    for patient, other in (("p1", "p2"), ("p2", "p1")):
        [event] = await mine(client, patient)
        assert event["agent"][0]["who"] == {"reference": "Person/per1"}
        assert event["entity"] == [
            {"what": {"reference": f"Patient/{patient}"}, "description": "GET /fhir/Observation?code:text"}
        ]
        assert other not in orjson.dumps(event).decode()


async def test_another_patients_id_in_the_path_is_not_shown(client: httpx.AsyncClient) -> None:
    """o1x (p1's) is a member of p2's o2m: p1's event for a search in p2's compartment does not
    name p2 (the path's id is replaced), yet still says what was asked."""
    performed = {
        "resourceType": "Observation",
        "id": "o12",
        "status": "final",
        "code": {"text": "shared"},
        "subject": {"reference": "Patient/p2"},
        "performer": [{"reference": "Patient/p1"}],
        "meta": {
            "security": [
                {
                    "system": "http://fhir.patientsknowbest.com/codesystem/privacy-label",
                    "code": "GENERAL_HEALTH",
                }
            ]
        },
    }
    assert (await client.put("Observation/o12", json=performed, headers=auth("system"))).status_code == 201
    body = (await client.get("Patient/p2/Observation?_id=o12", headers=auth("clinician"))).json()
    assert [e["resource"]["id"] for e in body["entry"]] == ["o12"]
    [event] = await mine(client, "p1")
    assert event["entity"] == [
        {
            "what": {"reference": "Patient/p1"},
            "description": "GET /fhir/Patient/[another patient]/Observation?_id",
        }
    ]


async def test_the_events_of_one_request_are_one_store_write(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search returning many patients writes its events in one transaction, not one per patient."""
    store = app.state.store
    writes: list[int] = []
    real_write = store.write

    async def counting(ops: Any) -> Any:
        writes.append(len(ops))
        return await real_write(ops)

    monkeypatch.setattr(store, "write", counting)
    assert (await client.get("Patient", headers=auth("clinician"))).status_code == 200
    assert writes == [2]


async def test_refused_access_is_audited_as_a_failure(client: httpx.AsyncClient) -> None:
    assert (await client.get("Observation/o1l", headers=auth("carer"))).status_code == 404
    [event] = await events(client)
    assert event["outcome"] == "4" and event["outcomeDesc"] == "404"


async def test_patients_and_systems_are_not_audited(client: httpx.AsyncClient) -> None:
    await client.get("Observation/o1v", headers=auth("p1"))
    assert await events(client) == []


async def test_audit_trail_is_append_only(client: httpx.AsyncClient) -> None:
    """Nobody changes or deletes an AuditEvent through the API, not even a system client."""
    await client.get("Observation/o1v", headers=auth("carer"))
    [event] = await events(client)
    assert (await client.delete(f"AuditEvent/{event['id']}", headers=auth("system"))).status_code == 403
    assert (
        await client.put(f"AuditEvent/{event['id']}", json=event, headers=auth("system"))
    ).status_code == 403
    assert (await client.post("AuditEvent", json=event, headers=auth("p1"))).status_code == 403


async def test_no_patient_data_in_the_log(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        await client.get("Patient?name=Famp1", headers=auth("clinician"))
    server_side = [
        r.getMessage() for r in caplog.records if not r.name.startswith("httpx")
    ]  # the client's own
    assert not any("Famp1" in line for line in server_side)
