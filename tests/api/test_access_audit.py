"""Clinician and carer accesses leave an AuditEvent the patient can find; the trail is append-only."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.settings import Settings
from tests.api.test_access_rules import BASE, DATA, auth, verify


@pytest.fixture
async def client(tmp_path: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(data_dir=tmp_path, auth=True, base_url=BASE))  # type: ignore[arg-type]
    app.state.verify_token = verify
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


async def test_search_by_clinician_names_every_patient_returned(client: httpx.AsyncClient) -> None:
    assert (await client.get("Patient", headers=auth("clinician"))).status_code == 200
    [event] = await events(client)
    assert {e["what"]["reference"] for e in event["entity"]} == {"Patient/p1", "Patient/p2"}


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
